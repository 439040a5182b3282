"""HTTP adapter of the order use case: JSON in, JSON out, errors as structured bodies."""

from __future__ import annotations

from pydantic import BaseModel

from framework.timestamps import Timestamp
from framework.transport.http import Router, error_responses

from app_template.api.order.v1.fields import AmountCents, Currency, CustomerId, OrderId, PageSize
from app_template.biz.order import Order, OrderUseCase

__all__ = ["CreateOrderBody", "OrderHttpService", "OrderList", "OrderView"]


_NOT_FOUND = "ORDER_NOT_FOUND: no order has this id"


class CreateOrderBody(BaseModel):
    """The body of ``POST /v1/orders``: the field types the use case validates with too, so
    the OpenAPI schema shows the real limits and a bad body fails before the use case runs."""

    customer_id: CustomerId
    amount_cents: AmountCents
    currency: Currency = "EUR"


class OrderView(BaseModel):
    id: str
    customer_id: str
    amount_cents: int
    currency: str
    status: str
    created_at: Timestamp

    @classmethod
    def of(cls, order: Order) -> OrderView:
        return cls(
            id=order.id,
            customer_id=order.customer_id,
            amount_cents=order.amount_cents,
            currency=order.currency,
            status=order.status.value,
            created_at=order.created_at,
        )


class OrderList(BaseModel):
    orders: list[OrderView]


class OrderHttpService:
    """Routes under ``/v1/orders``; ``router`` is mounted on the HTTP server."""

    def __init__(self, usecase: OrderUseCase) -> None:
        self.usecase = usecase
        self.router = Router(prefix="/v1/orders", tags=["orders"])
        self.router.add_api_route("", self.create, methods=["POST"], status_code=201)
        self.router.add_api_route("", self.list, methods=["GET"])
        self.router.add_api_route(
            "/{order_id}", self.get, methods=["GET"], responses=error_responses({404: _NOT_FOUND})
        )
        self.router.add_api_route(
            "/{order_id}/pay",
            self.pay,
            methods=["POST"],
            status_code=202,
            responses=error_responses({404: _NOT_FOUND, 409: "ORDER_ALREADY_PAID"}),
        )

    async def create(self, body: CreateOrderBody) -> OrderView:
        order = await self.usecase.create(body.customer_id, body.amount_cents, body.currency)
        return OrderView.of(order)

    async def get(self, order_id: OrderId) -> OrderView:
        return OrderView.of(await self.usecase.get(order_id))

    async def list(self, limit: PageSize = 50) -> OrderList:
        return OrderList(orders=[OrderView.of(o) for o in await self.usecase.list(limit)])

    async def pay(self, order_id: OrderId) -> OrderView:
        """Accepted: the order becomes PAID once the payment event is consumed."""
        return OrderView.of(await self.usecase.pay(order_id))
