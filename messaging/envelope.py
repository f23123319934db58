"""The one message shape that travels between the gateway and the contexts."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from uuid6 import uuid7

CONTENT_TYPE = "application/json"
# The W3C trace context's entries (in a body's `trace` and a broker message's headers).
TRACE_HEADERS = ("traceparent", "tracestate")


class InvalidEnvelope(ValueError):
    """A message that cannot be read as an Envelope; it is dead-lettered, never retried."""


@dataclasses.dataclass(frozen=True)
class Envelope:
    type: str
    task_id: str
    task_uuid: uuid.UUID
    client_id: str
    payload: dict[str, Any]
    message_id: uuid.UUID = dataclasses.field(default_factory=uuid7)
    causation_id: uuid.UUID | None = None
    occurred_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    # W3C trace context (traceparent, tracestate) to continue from; empty when tracing is off.
    trace: dict[str, str] = dataclasses.field(default_factory=dict)
    # A parked task sent again: the id of the message it was parked as. The consumer of its context
    # that resumed it handles it at once, in the same transaction and under that id (what it causes
    # then names a message that was published); it travels as this new message only otherwise. Not sent.
    resumed_from: uuid.UUID | None = dataclasses.field(default=None, compare=False)

    def caused(self, type: str, payload: dict[str, Any]) -> Envelope:
        """A new message about the same task, caused by this one."""
        return Envelope(
            type=type,
            task_id=self.task_id,
            task_uuid=self.task_uuid,
            client_id=self.client_id,
            payload=payload,
            causation_id=self.message_id,
            trace=self.trace,
        )

    @property
    def headers(self) -> dict[str, str]:
        headers = {
            "x-task-id": self.task_id,
            "x-task-uuid": str(self.task_uuid),
            "x-client-id": self.client_id,
        }
        if self.causation_id is not None:
            headers["x-causation-id"] = str(self.causation_id)
        headers.update(self.trace)
        return headers

    @property
    def log_fields(self) -> dict[str, str]:
        fields = {
            "task_id": self.task_id,
            "task_uuid": str(self.task_uuid),
            "message_id": str(self.message_id),
            "message_type": self.type,
        }
        if self.causation_id is not None:
            fields["causation_id"] = str(self.causation_id)
        return fields

    def to_body(self) -> dict[str, Any]:
        body = {
            "message_id": str(self.message_id),
            "type": self.type,
            "task_id": self.task_id,
            "task_uuid": str(self.task_uuid),
            "client_id": self.client_id,
            "causation_id": str(self.causation_id) if self.causation_id else None,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }
        if self.trace:
            body["trace"] = self.trace
        return body

    @classmethod
    def from_body(cls, body: Any) -> Envelope:
        """Read an envelope from a decoded JSON body; raise InvalidEnvelope naming what is wrong."""
        if not isinstance(body, dict):
            raise InvalidEnvelope("body is not a JSON object")
        try:
            causation = body.get("causation_id")
            if causation is not None and not isinstance(causation, str):
                raise InvalidEnvelope("causation_id must be a string")
            payload = body["payload"]
            if not isinstance(payload, dict):
                raise InvalidEnvelope("payload is not a JSON object")
            return cls(
                type=_text(body, "type"),
                task_id=_text(body, "task_id"),
                task_uuid=uuid.UUID(_text(body, "task_uuid")),
                client_id=_text(body, "client_id"),
                payload=payload,
                message_id=uuid.UUID(_text(body, "message_id")),
                causation_id=uuid.UUID(causation) if causation else None,
                occurred_at=datetime.fromisoformat(_text(body, "occurred_at")),
                trace=_trace(body.get("trace")),
            )
        except KeyError as missing:
            raise InvalidEnvelope(f"missing field {missing}") from None
        except (TypeError, ValueError, AttributeError) as error:
            if isinstance(error, InvalidEnvelope):
                raise
            raise InvalidEnvelope(f"malformed field: {error}") from None


def _trace(value: Any) -> dict[str, str]:
    """The W3C entries of a body's trace context; anything else in it is left out."""
    if not isinstance(value, dict):
        return {}
    return {key: value[key] for key in TRACE_HEADERS if isinstance(value.get(key), str)}


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise InvalidEnvelope(f"{key} must be a non-empty string")
    return value
