"""Business layer: entities, use cases and the interfaces they depend on."""

from app_template.biz.order import Order, OrderEvents, OrderRepo, OrderStatus, OrderUseCase

__all__ = ["Order", "OrderEvents", "OrderRepo", "OrderStatus", "OrderUseCase"]
