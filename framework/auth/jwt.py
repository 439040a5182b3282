"""Verify and sign JSON Web Tokens (RFC 7519) with PyJWT, mapping failures to 401 errors.

=================== ========================================================================
reason              when
=================== ========================================================================
``UNAUTHORIZED``    no token (no ``Authorization: Bearer ...`` header / metadata)
``TOKEN_EXPIRED``   ``exp`` is in the past (beyond ``leeway``)
``TOKEN_INVALID``   anything else: bad signature, malformed, wrong algorithm, wrong
                    ``aud``/``iss``, ``nbf``/``iat`` in the future, a required claim missing
=================== ========================================================================

Every failure is a :class:`framework.errors.Error` with code 401 (gRPC ``UNAUTHENTICATED``).
The message says what is wrong without echoing the token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from framework.errors import Error, Unauthorized

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(f"framework.auth needs PyJWT: pip install 'pykratos[auth]' ({exc})") from exc

__all__ = [
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "UNAUTHORIZED",
    "Claims",
    "JwtSigner",
    "JwtVerifier",
    "bearer_token",
]

UNAUTHORIZED = "UNAUTHORIZED"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_INVALID = "TOKEN_INVALID"

Claims = Mapping[str, Any]
Key = str | bytes | Any  # a secret, a PEM, or a cryptography key object


def bearer_token(headers: Mapping[str, Any], header: str = "authorization") -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case), or ``None``."""
    value = headers.get(header)
    if value is None and header != header.lower():
        value = headers.get(header.lower())
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class JwtVerifier:
    """Checks a token's signature and registered claims; returns its claims.

    Args:
        key: the verification key: an HMAC secret, or a public key (PEM or object) for
            RS/ES/EdDSA algorithms (these need the ``cryptography`` package).
        algorithms: accepted ``alg`` values; never accept ``none``.
        audience: required ``aud`` (one of them), if given.
        issuer: required ``iss``, if given.
        leeway: seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
        require: claims that must be present (default ``("exp",)``: no eternal tokens).
    """

    def __init__(
        self,
        key: Key,
        *,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        require: Sequence[str] = ("exp",),
    ) -> None:
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise ValueError("algorithms must list real signing algorithms, not 'none'")
        self._key = key
        self._algorithms = list(algorithms)
        self._audience = audience if isinstance(audience, str | None) else list(audience)
        self._issuer = issuer
        self._leeway = leeway
        self._options = {"require": list(require)}

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims.

        Raises:
            framework.errors.Error: 401 ``UNAUTHORIZED`` (no token), ``TOKEN_EXPIRED`` or
                ``TOKEN_INVALID`` (see the module docstring).
        """
        if not token:
            raise Unauthorized(UNAUTHORIZED, "missing bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized(TOKEN_EXPIRED, "token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise _invalid(exc) from exc
        return claims


def _invalid(exc: Exception) -> Error:
    # PyJWT's messages name the failed check ("Signature verification failed", "Invalid
    # audience"...) and never contain the token.
    return Unauthorized(TOKEN_INVALID, f"invalid token: {exc}")


class JwtSigner:
    """Signs tokens for outgoing calls; reuses one until it is close to expiring.

    Args:
        key: the signing key (HMAC secret, or a private key for RS/ES/EdDSA).
        algorithm: the ``alg`` to sign with.
        claims: claims put in every token (``sub``, ``aud``, ``iss``, scopes ...).
        expires_in: token lifetime in seconds (``exp`` = now + this).
        clock: seconds since the epoch, for tests.
    """

    def __init__(
        self,
        key: Key,
        *,
        algorithm: str = "HS256",
        claims: Claims | None = None,
        expires_in: float = 300.0,
        clock: Any = time.time,
    ) -> None:
        if expires_in <= 0:
            raise ValueError(f"expires_in must be > 0 seconds, got {expires_in!r}")
        self._key = key
        self._algorithm = algorithm
        self._claims = dict(claims or {})
        self._expires_in = expires_in
        self._clock = clock
        self._cached: tuple[str, float] | None = None

    def token(self) -> str:
        """A signed token with at least a fifth of its lifetime left."""
        now = self._clock()
        cached = self._cached
        if cached is not None and cached[1] - now > self._expires_in / 5:
            return cached[0]
        expires = now + self._expires_in
        claims = {**self._claims, "iat": int(now), "exp": int(expires)}
        token = jwt.encode(claims, self._key, algorithm=self._algorithm)
        self._cached = (token, expires)
        return token

    def authorization(self) -> str:
        """``"Bearer <token>"``: the value of the ``Authorization`` header / metadata."""
        return f"Bearer {self.token()}"
