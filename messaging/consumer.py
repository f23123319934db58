"""A reconnecting consumer that handles messages in database transactions: inbox row, handler,
outbox rows, commit, then ack; a redelivery finds its inbox row and changes nothing; what cannot
be handled is dead-lettered with its reason.

Messages that arrived together (up to batch_size) share one transaction (runs of a type with a
batch handler go to it at once); if the batch fails, its messages are handled one by one.

A consumer of the same process and database (messaging.nearby) may handle the messages a
transaction causes in that transaction (not on a retry: were its part what fails, the message's
own effects still commit); what it handled is not published.
Likewise a parked task that a handler resumes is decided at once, in the handler's transaction,
before anything handled after it (messaging.resuming; not on a retry either: it then travels as a
message).

A message type whose handler keeps its own record of the message ids it handled (a table keyed by
them, written in the same transaction) is its own inbox: its messages get no inbox row.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping

from kombu import Connection, Queue
from kombu.mixins import ConsumerMixin
from sqlalchemy import Engine, Table

from messaging import after_commit, resuming
from messaging.db import Transaction, is_unavailable
from messaging.dead_letters import send_to_dead_letters
from messaging.envelope import Envelope, InvalidEnvelope
from messaging.inbox import first_deliveries, first_delivery
from messaging.nearby import Nearby
from messaging.outbox import Publish, add_to_outbox
from messaging.tracing import continued, tracer

log = logging.getLogger(__name__)

# A handler writes through the transaction's Core Connection (messaging.db.Transaction).
Handler = Callable[[Transaction, Envelope], list[Envelope]]
BatchHandler = Callable[[Transaction, list[Envelope]], list[Envelope]]

# A handler that raises is retried in place this many times (seconds between tries), then its
# message is dead-lettered. A database outage is not counted: the message waits for the database.
RETRY_DELAYS = (0.1, 0.5, 2.0)


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed; dead-letters it at once."""


class MessageWorker(ConsumerMixin):
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
        self.handlers = handlers
        self.batch_handlers = batch_handlers or {}
        self.engine = engine
        self.inbox = inbox
        self.outbox = outbox
        self.publish = publish
        self.prefetch_count = prefetch_count
        self.batch_size = batch_size
        self.retry_delays = retry_delays
        self.linger = linger
        self.own_inbox = own_inbox
        self.nearby = nearby
        self._last_batch_size = 0
        self._batch: list[tuple[Envelope, Handler, object]] = []
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

    def run_until(self, stop: threading.Event) -> None:
        """Consume until stop is set (checked at least once a second)."""
        watcher = threading.Thread(target=self._stop_when, args=(stop,), daemon=True)
        watcher.start()
        self.run()

    def _stop_when(self, stop: threading.Event) -> None:
        stop.wait()
        self.should_stop = True

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

    def _take(self, body, message) -> tuple[Envelope, Handler, object] | None:
        """The message's envelope and handler; a message that has neither is dead-lettered."""
        try:
            envelope = Envelope.from_body(body)
        except InvalidEnvelope as error:
            self._rejected.append((message, f"invalid envelope: {error}", None))
            return None
        handler = self.handlers.get(envelope.type)
        if handler is None:
            self._rejected.append((message, f"no handler for message type {envelope.type!r}", envelope))
            return None
        return envelope, handler, message

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
                self._handle_together(batch)
            except Exception as error:
                log.info(
                    "a batch of %d failed (%s); handling them one by one", len(batch), type(error).__name__
                )
            else:
                self._ack_together([message for _, _, message in batch])
                return
        for envelope, handler, message in batch:
            try:
                self._process(envelope, handler, message)
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

    def _handle_together(self, batch) -> None:
        envelopes = [envelope for envelope, _, _ in batch]
        with tracer().processing(envelopes, self.queue.name):
            with (
                self.engine.begin() as connection,
                resuming.deciding(functools.partial(self._decide, connection)),
            ):
                after_commit.begin(connection)
                messages = [(envelope.message_id, envelope.type) for envelope in envelopes]
                firsts = first_deliveries(connection, self.inbox, messages, self.own_inbox)
                handled = []
                for (envelope, handler, _), first in zip(batch, firsts, strict=True):
                    if first:
                        handled.append((envelope, handler))
                    else:
                        log.info("duplicate message ignored", extra=envelope.log_fields)
                caused = []
                # In order; a run of messages of one type with a batch handler goes to it at once.
                for kind, run in itertools.groupby(handled, key=lambda item: item[0].type):
                    if kind in self.batch_handlers:
                        caused += self.batch_handlers[kind](connection, [envelope for envelope, _ in run])
                    else:
                        for envelope, handler in run:
                            caused += handler(connection, envelope)
                caused = self._handled_nearby(connection, caused, envelopes)
                written = add_to_outbox(connection, self.outbox, caused)
                committed = after_commit.registered(connection)
            self._after(committed, written)
            for envelope, _ in handled:
                self._log_handled(envelope)

    def _process(self, envelope: Envelope, handler: Handler, message) -> None:
        try:
            outcome = self._handle_with_retries(handler, envelope)
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

    def _handle_with_retries(self, handler: Handler, envelope: Envelope) -> bool | None:
        failures = 0
        outage_wait = 0.5
        while not self.should_stop:
            try:
                # A retry leaves the nearby consumer out: were its part what fails, the message's
                # own effects still commit, and the messages they caused take the broker.
                return self._handle_once(handler, envelope, with_nearby=failures == 0)
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

    def _handle_once(self, handler: Handler, envelope: Envelope, *, with_nearby: bool = True) -> bool:
        """Handle envelope in one transaction (with the nearby consumer, if any and with_nearby);
        False if it had been handled before."""
        with tracer().processing([envelope], self.queue.name):
            with self.engine.begin() as connection:
                after_commit.begin(connection)
                if envelope.type not in self.own_inbox and not first_delivery(
                    connection, self.inbox, envelope.message_id, envelope.type
                ):
                    log.info("duplicate message ignored", extra=envelope.log_fields)
                    return False
                with resuming.deciding(functools.partial(self._decide, connection) if with_nearby else None):
                    caused = handler(connection, envelope)
                caused = self._handled_nearby(connection, caused, [envelope], with_nearby)
                written = add_to_outbox(connection, self.outbox, caused)
                committed = after_commit.registered(connection)
            self._after(committed, written)
            self._log_handled(envelope)
        return True

    def _decide(self, connection, resumed: list[Envelope]) -> list[Envelope]:
        """Parked tasks a handler has just resumed in connection's transaction, decided here and
        now, in order, each as the message it was parked as (what it causes then names a message
        that was published) in a process span of its own trace: what they caused. One this
        consumer has no handler for is sent instead."""
        caused = []
        for envelope in resumed:
            handler = self.handlers.get(envelope.type)
            if handler is None or envelope.resumed_from is None:
                caused.append(envelope)
                continue
            parked = dataclasses.replace(envelope, message_id=envelope.resumed_from, resumed_from=None)
            with tracer().processing([parked], self.queue.name):
                try:
                    caused += continued(handler(connection, parked), [parked])
                except PermanentError as error:  # the task's, not the message's that resumed it: on
                    # the retry the task travels, and its own delivery is dead-lettered
                    raise RuntimeError(f"a resumed task cannot be handled: {error}") from error
            after_commit.after_commit(connection, functools.partial(self._log_handled, parked))
        return caused

    def _handled_nearby(
        self, connection, caused: list[Envelope], handled: list[Envelope], with_nearby: bool = True
    ) -> list[Envelope]:
        """The messages caused by handling handled, marked with the nearby consumer's queue where it
        has just handled them in this transaction."""
        caused = continued(caused, handled)
        return self.nearby.take(connection, caused) if self.nearby and with_nearby else caused

    def _log_handled(self, envelope: Envelope) -> None:
        # A type that is its own inbox has its handler say what became of each message (a repeat
        # among them changed nothing).
        if envelope.type not in self.own_inbox:
            log.info("handled %s", envelope.type, extra=envelope.log_fields)

    def _after(self, committed: list[Callable[[], None]], written: list[dict]) -> None:
        """Once the transaction committed: what its handlers left to do then (see after_commit),
        and the outbox rows it wrote go to the relay."""
        for callback in committed:
            callback()
        if written and self.publish is not None:
            self.publish(written)

    def dead_letter(self, message, reason: str, envelope: Envelope | None = None) -> None:
        """Republish message to the dead-letter exchange with reason, then ack it."""
        send_to_dead_letters(message, self.queue.name, reason)
        log.error("dead-lettered: %s", reason, extra=envelope.log_fields if envelope else {})
