"""Data layer: implementations of the interfaces biz owns."""

from app_template.data.db import Database
from app_template.data.events import NOTIFICATIONS, OrderEventMessages
from app_template.data.order_repo import SqlOrderRepo
from app_template.data.transactions import SqlOrderTransactions, SqlOrderUnitOfWork

__all__ = [
    "NOTIFICATIONS",
    "Database",
    "OrderEventMessages",
    "SqlOrderRepo",
    "SqlOrderTransactions",
    "SqlOrderUnitOfWork",
]
