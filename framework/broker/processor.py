"""The :class:`SubscriberProcessor`: decode, middleware, handler, retries, for every broker.

This is the per-message hot path. Everything that can be decided once is decided in
``__init__`` (signature, decoder, middleware chain, how to call the handler), so a successful
message costs: one decode call, one :class:`Transport` object set in the contextvar, the
middleware chain and the handler. No task, no log line, no introspection per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from framework.broker.broker import Outcome, ProcessResult, RetryLater
from framework.broker.codec import Codec, DecodeError, JsonCodec, decoder_for
from framework.broker.message import Message
from framework.broker.signature import check_wiring, payload_type, signature_of
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import TAG_HEADER
from framework.errors import Error
from framework.middleware.core import Handler, Middleware, chain
from framework.observer import DEAD_LETTERED, FILTERED, OK, RETRIED, current_observer
from framework.transport.context import Transport, current_transport

__all__ = ["DeadLetterSink", "SubscriberProcessor", "describe_exception"]

#: Publishes one message to the dead-letter destination (see ``publisher.dead_letter``).
DeadLetterSink = Callable[[Message, ProcessResult], Awaitable[Any]]

_log = logging.getLogger("pykratos.broker")
_clock = time.perf_counter
_ACK_FIRST = ProcessResult(Outcome.ACK, 1)
_POISON_CODE = 400  # an invalid message stays invalid: retrying cannot help


def describe_exception(exc: BaseException) -> str:
    """``"<ExcType>: <msg>"``, the ``reason`` of a dead message (one line).

    A 5xx :class:`Error` raised *from* another exception (``recovery()`` turns any exception
    into a generic 500) also names that cause, which is what an operator reading the DLQ
    needs; ``error_type`` is then the cause's type too.
    """
    text = _one_line(exc)
    cause = _hidden_cause(exc)
    return f"{text} <- {_one_line(cause)}" if cause is not None else text


def _hidden_cause(exc: BaseException) -> BaseException | None:
    # Only a 5xx wrapper hides its cause; a 4xx Error already says what is wrong.
    if isinstance(exc, Error) and exc.code >= 500 and exc.__cause__ is not None:
        return exc.__cause__
    return None


def _error_type(exc: BaseException) -> str:
    cause = _hidden_cause(exc)
    return type(cause if cause is not None else exc).__name__


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, Error):
        text = f"{exc.code} {exc.reason}: {exc.message}".rstrip(": ")
    else:
        text = str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SubscriberProcessor:
    """Implements :class:`~framework.broker.broker.MessageProcessor` for one subscriber.

    Args:
        spec: the subscriber.
        codec: decodes message bodies into the handler's payload type.
        middlewares: server-level middleware, outermost; the spec's own run inside them.
        broker_kind: ``Transport.kind`` seen by middleware and handlers ("kafka", ...).
        endpoint: ``Transport.endpoint`` (the broker server's URL).
        dead_letter_sink: lets :meth:`process_batch` dead-letter an undecodable message
            alone and hand the rest of the batch to the handler; without it, such a batch is
            returned DEAD as a whole. (If the rest then fails too, the broker dead-letters the
            whole batch, so the undecodable one reaches the DLQ twice: at-least-once.)

    Raises ``TypeError`` (unusable handler signature or payload type) and
    :class:`~framework.broker.signature.WiringError` (unwired ``Provide`` marker) at once, so a
    server fails at start rather than at the first message.
    """

    def __init__(
        self,
        spec: SubscriberSpec,
        codec: Codec | None = None,
        middlewares: Iterable[Middleware] = (),
        broker_kind: str = "memory",
        *,
        endpoint: str = "",
        dead_letter_sink: DeadLetterSink | None = None,
    ) -> None:
        self.spec = spec
        self._kind = broker_kind
        self._operation = spec.topic
        self._endpoint = endpoint
        self._retry = spec.retry
        self._sink = dead_letter_sink
        #: Tags this subscriber receives (empty: all). Brokers that filter on the server
        #: never deliver the others; elsewhere they are acknowledged here, unhandled.
        self._tags = spec.tags
        self._encode = (codec if codec is not None else JsonCodec()).encode
        self._name = name = spec.display_name

        handler = spec.handler
        signature = signature_of(handler)
        check_wiring(handler, signature, name)
        body_type = payload_type(signature, batch=spec.batch is not None, name=name)
        # A Message payload is the raw message itself: nothing to decode.
        self._passthrough = body_type is Message
        self._decode = _identity if self._passthrough else self._decoder(codec, body_type)

        # Payload only: the handler itself is the innermost Handler, no wrapper frame.
        inner: Handler = handler
        if signature.message_param is not None:
            inner = _with_message(handler, signature.message_param)
        self._run: Handler = chain(*middlewares, *spec.middlewares)(inner)

    def _decoder(self, codec: Codec | None, body_type: Any) -> Callable[[bytes], Any]:
        try:
            return decoder_for(codec if codec is not None else JsonCodec(), body_type)
        except TypeError as exc:
            raise TypeError(f"handler {self._name}: {exc}") from exc

    # -- single messages -------------------------------------------------------------------

    async def process(self, message: Message, *, retry_in_process: bool = True) -> ProcessResult:
        """Decode, run middleware and handler, retry on failure; see ``MessageProcessor``.

        A message whose tag the subscriber did not ask for is acknowledged at once, unhandled
        (undecoded too: a message filtered out is not this subscriber's to judge).
        """
        if self._tags and message.headers.get(TAG_HEADER) not in self._tags:
            self._observe(FILTERED, None, 1, None)
            return _ACK_FIRST
        try:
            payload = message if self._passthrough else self._decode(message.body)
        except DecodeError as exc:
            return self._undecodable(message, exc)
        token = current_transport.set(
            Transport(self._kind, self._operation, message.headers, {}, self._endpoint, message)
        )
        try:
            while True:
                started = _clock()
                try:
                    value = await self._run(payload)
                except Exception as exc:
                    delay = self._failed(exc, message.attempt)
                    self._observe(RETRIED if delay is not None else DEAD_LETTERED, started, 1, exc)
                    if delay is None:
                        return self._dead(exc, message.attempt)
                    if not retry_in_process:
                        raise RetryLater(delay, exc) from exc
                    await asyncio.sleep(delay)
                    message.attempt += 1
                    continue
                self._observe(OK, started, 1, None)
                attempt = message.attempt
                if value is not None:
                    return self._replied(value, attempt)
                return _ACK_FIRST if attempt == 1 else ProcessResult(Outcome.ACK, attempt)
        finally:
            current_transport.reset(token)

    def _replied(self, value: Any, attempt: int) -> ProcessResult:
        """ACK carrying the encoded return value (a reply for request/reply brokers)."""
        try:
            reply = self._encode(value)
        except Exception as exc:  # handled all the same: only the answer is missing
            _log.warning("%s: cannot encode the return value as a reply: %r", self._name, exc)
            reply = None
        return ProcessResult(Outcome.ACK, attempt, reply=reply)

    # -- batches ---------------------------------------------------------------------------

    async def process_batch(self, messages: Sequence[Message]) -> ProcessResult:
        """Decode every message, then run the handler on the list, retrying it as a whole.

        Messages whose tag the subscriber did not ask for are left out of the list (and
        acknowledged with the batch); a batch of only such messages is acknowledged at once.
        """
        payloads: list[Any] = []
        kept: list[Message] = []
        tags = self._tags
        filtered = 0
        for message in messages:
            if tags and message.headers.get(TAG_HEADER) not in tags:
                filtered += 1
                continue
            try:
                payloads.append(message if self._passthrough else self._decode(message.body))
            except DecodeError as exc:
                dead = self._undecodable(message, exc)
                if self._sink is None:
                    where = _position(message)
                    return ProcessResult(
                        Outcome.DEAD, dead.attempts, f"{dead.reason} ({where})", dead.error_type
                    )
                await self._sink(message, dead)
                continue
            kept.append(message)
        if filtered:
            self._observe(FILTERED, None, filtered, None)
        if not kept:
            return _ACK_FIRST
        headers = kept[0].headers
        token = current_transport.set(
            Transport(self._kind, self._operation, headers, {}, self._endpoint, kept)
        )
        try:
            attempt = kept[0].attempt
            while True:
                started = _clock()
                try:
                    await self._run(payloads)
                except Exception as exc:
                    delay = self._failed(exc, attempt)
                    outcome = RETRIED if delay is not None else DEAD_LETTERED
                    self._observe(outcome, started, len(kept), exc)
                    if delay is None:
                        return self._dead(exc, attempt)
                    await asyncio.sleep(delay)
                    attempt += 1
                    for message in kept:
                        message.attempt = attempt
                    continue
                self._observe(OK, started, len(kept), None)
                return _ACK_FIRST if attempt == 1 else ProcessResult(Outcome.ACK, attempt)
        finally:
            current_transport.reset(token)

    def _observe(
        self, outcome: str, started: float | None, count: int, exc: Exception | None
    ) -> None:
        """Report an attempt to the metrics observer (:mod:`framework.observer`), if any."""
        observer = current_observer()
        if observer is None:
            return
        observer.message_processed(
            self._kind,
            self._operation,
            self.spec.group,
            outcome,
            None if started is None else _clock() - started,
            count,
            None if exc is None else _error_type(exc),
        )

    # -- failure paths (off the hot path) --------------------------------------------------

    def _undecodable(self, message: Message, exc: DecodeError) -> ProcessResult:
        _log.warning(
            "%s: cannot decode message from %s: %s",
            self._name,
            _position(message),
            exc.reason,
            extra={"subscriber": self._name, "topic": message.topic or self.spec.topic},
        )
        self._observe(DEAD_LETTERED, None, 1, exc)
        return ProcessResult(Outcome.DEAD, message.attempt, f"decode: {exc.reason}", "DecodeError")

    def _failed(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when the message is dead."""
        if isinstance(exc, Error) and exc.code == _POISON_CODE:
            return None
        if attempt >= self._retry.max_attempts:
            return None
        delay = self._retry.delay(attempt)
        _log.warning(
            "%s failed (attempt %d/%d), retrying in %.3fs: %s",
            self._name,
            attempt,
            self._retry.max_attempts,
            delay,
            describe_exception(exc),
            extra={"subscriber": self._name, "topic": self.spec.topic, "attempt": attempt},
        )
        return delay

    def _dead(self, exc: Exception, attempt: int) -> ProcessResult:
        reason = describe_exception(exc)
        _log.error(
            "%s failed after %d attempt(s), giving up: %s",
            self._name,
            attempt,
            reason,
            exc_info=exc,
            extra={"subscriber": self._name, "topic": self.spec.topic, "attempt": attempt},
        )
        return ProcessResult(Outcome.DEAD, attempt, reason, _error_type(exc))


def _identity(data: bytes) -> bytes:
    return data


def _with_message(handler: Callable[..., Awaitable[Any]], param: str) -> Handler:
    def call(payload: Any) -> Awaitable[Any]:
        # The raw message(s) ride in the transport context that process() sets.
        transport = current_transport.get()
        return handler(payload, **{param: transport.raw if transport is not None else None})

    return call


def _position(message: Message) -> str:
    where = message.topic or "?"
    if message.partition is not None:
        where += f"[{message.partition}]"
    if message.offset is not None:
        where += f"@{message.offset}"
    elif message.id:
        where += f" id={message.id}"
    return where
