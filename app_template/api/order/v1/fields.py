"""What a valid value of each order field is, declared once.

Every transport validates against these types (the HTTP bodies and path parameters, the
use case's arguments that gRPC reaches, the WebSocket payloads, the broker events), and the
``data`` layer sizes its columns from the same constants, so a value that passes validation
always fits its column: no NUL, no lone surrogate, no string longer than the column, no
integer beyond ``BIGINT``. Change a limit here and every transport and the table follow.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt
from pydantic import Strict, StringConstraints

from framework.validation import Int32, Int64, StorableText

__all__ = [
    "CURRENCY_LENGTH",
    "CUSTOMER_ID_MAX_LENGTH",
    "ORDER_ID_MAX_LENGTH",
    "ORDER_ID_PATTERN",
    "AmountCents",
    "Currency",
    "CustomerId",
    "OrderId",
    "PageSize",
]

#: ``orders.id``: a UUID in hex (``uuid.uuid4().hex``).
ORDER_ID_MAX_LENGTH = 32
#: The only ids the service issues: 32 lowercase hex digits.
ORDER_ID_PATTERN = rf"^[0-9a-f]{{{ORDER_ID_MAX_LENGTH}}}$"
#: ``orders.customer_id``.
CUSTOMER_ID_MAX_LENGTH = 64
#: ``orders.currency``: an ISO 4217 code.
CURRENCY_LENGTH = 3

#: An id the service could have issued; anything else is 400 ``VALIDATOR``, not a lookup that
#: answers 404 (e.g. a path segment whose invalid UTF-8 was percent-decoded into U+FFFD).
OrderId = Annotated[
    str,
    StorableText(min_length=1, max_length=ORDER_ID_MAX_LENGTH),
    StringConstraints(pattern=ORDER_ID_PATTERN),
]
CustomerId = Annotated[str, StorableText(min_length=1, max_length=CUSTOMER_ID_MAX_LENGTH)]
#: ASCII letters only: ``str.upper()`` keeps their length ("ß" would become "SS").
Currency = Annotated[str, StringConstraints(pattern=rf"^[A-Za-z]{{{CURRENCY_LENGTH}}}$")]
#: A positive amount that fits ``orders.amount_cents`` (``BIGINT``) and protobuf ``int64``.
#: Strict: a JSON ``true``, ``"5"`` or ``5.0`` is refused, not coerced to 1 or 5 (protobuf
#: integers are ints, so gRPC is unaffected).
AmountCents = Annotated[Int64, Strict(), Gt(0)]
#: Orders per page (protobuf ``int32``, unset reads 0): 0 means the default, a negative
#: size is refused. Not strict: over HTTP it is a query parameter, which is text.
PageSize = Annotated[Int32, Ge(0)]
