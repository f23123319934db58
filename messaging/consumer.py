"""A reconnecting consumer of one queue: it takes the messages that have arrived (up to
batch_size), has them handled in database transactions (messaging.handling), acks them once those
have committed, and dead-letters with its reason what cannot be handled. A batch that fails is
handled again one message at a time; a handler that fails is retried in place, then its message
is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from kombu import Connection, Queue
from sqlalchemy import Engine, Table

from messaging.db import is_unavailable
from messaging.dead_letters import send_to_dead_letters
from messaging.envelope import Envelope, InvalidEnvelope
from messaging.handling import BatchHandler, Handler, Handling, PermanentError
from messaging.nearby import Nearby
from messaging.outbox import Publish
from messaging.stopping import StoppingConsumer

log = logging.getLogger(__name__)

# A handler that raises is retried in place this many times (seconds between tries), then its
# message is dead-lettered. A database outage is not counted: the message waits for the database.
RETRY_DELAYS = (0.1, 0.5, 2.0)
# A dead letter the broker refused goes back to its queue after this pause.
DEAD_LETTER_PAUSE_SECONDS = 1.0


class MessageWorker(StoppingConsumer):
    def __init__(
        self,
        broker: Connection,
        queue: Queue,
        handlers: Mapping[str, Handler],
        engine: Engine,
        *,
        inbox: Table,
        outbox: Table,
        publish: Publish | None = None,
        prefetch_count: int = 100,
        batch_size: int = 50,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        linger: float = 0.0,
        own_inbox: frozenset[str] = frozenset(),
        nearby: Nearby | None = None,
    ):
        self.connection = broker
        self.queue = queue
        self.handling = Handling(
            engine,
            queue.name,
            handlers,
            inbox=inbox,
            outbox=outbox,
            publish=publish,
            batch_handlers=batch_handlers,
            own_inbox=own_inbox,
            nearby=nearby,
        )
        self.prefetch_count = prefetch_count
        self.batch_size = batch_size
        self.retry_delays = retry_delays
        self.linger = linger
        self._last_batch_size = 0
        self._batch: list[tuple[Envelope, object]] = []
        # Messages to dead-letter, with their reason: done in flush(), not in the broker's callback,
        # where publishing (and declaring the dead-letter queue) would nest in the delivery loop.
        self._rejected: list[tuple[object, str, Envelope | None]] = []
        self._consuming = None

    def get_consumers(self, Consumer, channel):
        return [
            Consumer(
                queues=[self.queue],
                callbacks=[self.on_message],
                accept=["json"],
                prefetch_count=self.prefetch_count,
            )
        ]

    def on_decode_error(self, message, exc):
        self._rejected.append((message, f"undecodable body: {exc}", None))

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        self._consuming = connection
        # After a reconnect: whatever was taken on the old channel is redelivered on the new one
        # (it was not acked); kombu does not always call on_consume_end when a channel breaks.
        self._batch.clear()
        self._rejected.clear()

    def on_consume_end(self, connection, channel) -> None:
        # Whatever was taken but not handled is redelivered by the broker; it was not acked.
        self._batch.clear()
        self._rejected.clear()

    def on_iteration(self) -> None:
        """Before waiting for the next message: take what has already arrived, then handle it all."""
        if not self._batch and not self._rejected:
            return
        # What has arrived goes in one batch; under load (the last batch held more than one
        # message), so does what arrives within the linger.
        deadline = time.monotonic() + (self.linger if self._last_batch_size > 1 else 0.0)
        # As many deliveries as the batch has room for, whatever they are (some may be dead-lettered).
        for _ in range(self.batch_size - len(self._batch)):
            try:
                self._consuming.drain_events(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
        self.flush()

    def on_message(self, body, message) -> None:
        try:
            taken = self._take(body, message)
        except Exception as error:  # never let one message kill the consumer
            log.exception("unexpected failure taking a message")
            self._rejected.append((message, f"unexpected failure: {type(error).__name__}: {error}", None))
            return
        if taken is not None:
            self._batch.append(taken)

    def _take(self, body, message) -> tuple[Envelope, object] | None:
        """The message's envelope, if it is one this queue has a handler for; if not, the message
        is dead-lettered."""
        try:
            envelope = Envelope.from_body(body)
        except InvalidEnvelope as error:
            self._rejected.append((message, f"invalid envelope: {error}", None))
            return None
        if envelope.type not in self.handling.handlers:
            self._rejected.append((message, f"no handler for message type {envelope.type!r}", envelope))
            return None
        return envelope, message

    def flush(self) -> None:
        """Handle the messages taken so far: together if they can be, else one by one."""
        # Both taken before any I/O: what arrives while dead-lettering (a publish may wait for the
        # broker, which delivers meanwhile) comes after this batch's last delivery tag.
        rejected, self._rejected = self._rejected, []
        batch, self._batch = self._batch, []
        self._last_batch_size = len(batch)
        for message, reason, envelope in rejected:
            self.dead_letter(message, reason, envelope)
        if len(batch) > 1:
            try:
                self.handling.together([envelope for envelope, _ in batch])
            except Exception as error:
                log.info(
                    "a batch of %d failed (%s); handling them one by one", len(batch), type(error).__name__
                )
            else:
                self._ack_together([message for _, message in batch])
                return
        for envelope, message in batch:
            try:
                self._process(envelope, message)
            except Exception as error:  # never let one message kill the consumer
                if message.acknowledged:
                    raise
                log.exception("unexpected failure processing a message")
                self.dead_letter(message, f"unexpected failure: {type(error).__name__}: {error}")

    def _ack_together(self, messages: list) -> None:
        """Ack a committed batch. On AMQP one frame acks them all (multiple=True acks every
        delivery of the channel up to the given tag): every message delivered before the batch's
        last was acked, requeued or dead-lettered already (flush() dead-letters before it handles
        the batch), or is in the batch. The in-process broker acks one by one (it ignores
        multiple)."""
        last = max(messages, key=lambda message: message.delivery_tag)
        if self.connection.transport.driver_type == "amqp":
            last.ack(multiple=True)
            return
        for message in messages:
            message.ack()

    def _process(self, envelope: Envelope, message) -> None:
        try:
            outcome = self._handle_with_retries(envelope)
        except PermanentError as error:
            self.dead_letter(message, f"rejected by handler: {error}", envelope)
            return
        except Exception as error:
            log.exception("handler failed for good", extra=envelope.log_fields)
            self.dead_letter(message, f"handler failed: {type(error).__name__}: {error}", envelope)
            return
        if outcome is None:  # stopping while the database is away: let the broker redeliver
            message.requeue()
            return
        message.ack()

    def _handle_with_retries(self, envelope: Envelope) -> bool | None:
        failures = 0
        outage_wait = 0.5
        while not self.should_stop:
            try:
                # A retry leaves the nearby consumer out: were its part what fails, the message's
                # own effects still commit, and the messages they caused take the broker.
                return self.handling.once(envelope, with_nearby=failures == 0)
            except PermanentError:
                raise
            except Exception as error:
                if is_unavailable(error):
                    log.warning("database unavailable; holding message", extra=envelope.log_fields)
                    time.sleep(outage_wait)
                    outage_wait = min(outage_wait * 2, 5.0)
                    continue
                if failures == len(self.retry_delays):
                    raise
                log.warning("handler failed (%s); retrying", error, extra=envelope.log_fields)
                time.sleep(self.retry_delays[failures])
                failures += 1
        return None

    def dead_letter(self, message, reason: str, envelope: Envelope | None = None) -> None:
        """Republish message to the dead-letter exchange with reason, then ack it. Should the
        broker refuse the dead letter (a nack), the message goes back to its queue to be
        dead-lettered when it comes round again; a lost connection is the consumer's to mend."""
        fields = envelope.log_fields if envelope else {}
        try:
            send_to_dead_letters(message, self.queue.name, reason)
        except self.connection.connection_errors + self.connection.channel_errors:
            raise
        except Exception:
            log.exception("dead-lettering failed; the message goes back to its queue", extra=fields)
            time.sleep(DEAD_LETTER_PAUSE_SECONDS)  # it comes straight back: not in a tight loop
            message.requeue()
            return
        log.error("dead-lettered: %s", reason, extra=fields)
