"""What a valid value of each order field is, declared once.

Every transport validates against these types (the HTTP bodies and path parameters, the
use case's arguments that gRPC reaches, the WebSocket payloads, the broker events), and the
``data`` layer sizes its columns from the same constants, so a value that passes validation
always fits its column: no NUL, no lone surrogate, no string longer than the column, no
integer beyond ``BIGINT``. Change a limit here and every transport and the table follow.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Gt
from pydantic import StringConstraints

from framework.validation import Int32, Int64, StorableText

__all__ = [
    "CURRENCY_LENGTH",
    "CUSTOMER_ID_MAX_LENGTH",
    "ORDER_ID_MAX_LENGTH",
    "AmountCents",
    "Currency",
    "CustomerId",
    "OrderId",
    "PageSize",
]

#: ``orders.id``: a UUID in hex.
ORDER_ID_MAX_LENGTH = 32
#: ``orders.customer_id``.
CUSTOMER_ID_MAX_LENGTH = 64
#: ``orders.currency``: an ISO 4217 code.
CURRENCY_LENGTH = 3

OrderId = Annotated[str, StorableText(min_length=1, max_length=ORDER_ID_MAX_LENGTH)]
CustomerId = Annotated[str, StorableText(min_length=1, max_length=CUSTOMER_ID_MAX_LENGTH)]
#: ASCII letters only: ``str.upper()`` keeps their length ("ß" would become "SS").
Currency = Annotated[str, StringConstraints(pattern=rf"^[A-Za-z]{{{CURRENCY_LENGTH}}}$")]
#: A positive amount that fits ``orders.amount_cents`` (``BIGINT``) and protobuf ``int64``.
AmountCents = Annotated[Int64, Gt(0)]
#: Orders per page (protobuf ``int32``); 0 means the default.
PageSize = Int32
