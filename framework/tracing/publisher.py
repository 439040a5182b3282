"""A :class:`~framework.broker.Publisher` that traces what it publishes.

Each publish gets a PRODUCER span (``publish <topic>``), child of the current span, and the
span's context travels in the message headers; the :func:`~framework.tracing.tracing`
middleware on the consuming side makes the subscriber's CONSUMER span its child, so one trace
follows the message across the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from framework.broker.acks import Acks, OnPublishError
from framework.broker.broker import Broker, PublishResult
from framework.broker.codec import Codec
from framework.broker.publisher import Publisher
from framework.errors import from_exception
from framework.tracing.availability import TracingUnavailableError
from framework.tracing.outcome import record_error
from framework.tracing.propagation import inject
from framework.tracing.tracer import TracerSource

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("TracedPublisher", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["TracedPublisher"]


class TracedPublisher(Publisher):
    """:class:`~framework.broker.Publisher` with a PRODUCER span per message.

    A drop-in replacement in a DI container
    (``providers.Singleton(TracedPublisher, broker)``). With no tracer provider configured it
    publishes exactly like :class:`Publisher`.

    Args:
        broker: the broker to publish through.
        codec: encodes payloads (JSON by default).
        tracer_provider: the provider to use; ``None`` follows the global one.
        acks, on_error: as for :class:`~framework.broker.Publisher`.
    """

    def __init__(
        self,
        broker: Broker,
        codec: Codec | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        acks: Acks | None = None,
        on_error: OnPublishError | None = None,
    ) -> None:
        super().__init__(broker, codec, acks=acks, on_error=on_error)
        self._tracers = TracerSource(tracer_provider)

    async def publish(
        self,
        topic: str,
        payload: Any,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        *,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
    ) -> PublishResult:
        """Publish like :meth:`Publisher.publish`, inside a PRODUCER span whose context is
        added to the message headers (the caller's ``headers`` mapping is not modified)."""
        tracer = self._tracers.get()
        if tracer is None:
            return await super().publish(
                topic,
                payload,
                key,
                headers,
                delay,
                deliver_at=deliver_at,
                partition=partition,
                tag=tag,
            )
        kind = self.broker.kind
        span = tracer.start_span(
            f"publish {topic}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": kind,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": topic,
                "pykratos.transport": kind,
            },
        )
        carrier = inject(dict(headers) if headers else {}, trace.set_span_in_context(span))
        try:
            result = await super().publish(
                topic,
                payload,
                key,
                carrier,
                delay,
                deliver_at=deliver_at,
                partition=partition,
                tag=tag,
            )
        except Exception as exc:
            record_error(span, exc, from_exception(exc), failed=True)
            raise
        else:
            if result.message_id:
                span.set_attribute("messaging.message.id", result.message_id)
            if result.partition is not None:
                span.set_attribute("messaging.destination.partition.id", str(result.partition))
            return result
        finally:
            span.end()
