"""Data layer: implementations of the interfaces biz owns."""

from app_template.data.db import Database
from app_template.data.events import BrokerOrderEvents
from app_template.data.order_repo import SqlOrderRepo

__all__ = ["BrokerOrderEvents", "Database", "SqlOrderRepo"]
