"""Handling messages in database transactions: inbox row, handler, outbox rows, commit; a message
handled before finds its inbox row and changes nothing. The consumer (messaging.consumer) acks a
message once its transaction has committed.

Messages handled together share one transaction (runs of a type with a batch handler go to it at
once). A consumer of the same process and database (messaging.nearby) may handle the messages a
transaction causes in that transaction; what it handled is not published. Likewise a parked task
that a handler resumes is decided at once, in the handler's transaction, before anything handled
after it (messaging.resuming).

A message type whose handler keeps its own record of the message ids it handled (a table keyed by
them, written in the same transaction) is its own inbox: its messages get no inbox row.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Mapping

from sqlalchemy import Engine, Table

from messaging import after_commit, resuming
from messaging.db import Transaction
from messaging.envelope import Envelope
from messaging.inbox import first_deliveries, first_delivery
from messaging.nearby import Nearby
from messaging.outbox import Publish, add_to_outbox
from messaging.tracing import continued, tracer

log = logging.getLogger(__name__)

# A handler writes through the transaction's Core Connection (messaging.db.Transaction).
Handler = Callable[[Transaction, Envelope], list[Envelope]]
BatchHandler = Callable[[Transaction, list[Envelope]], list[Envelope]]


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed; dead-letters it at once."""


class Handling:
    """One queue's messages, handled in transactions of engine."""

    def __init__(
        self,
        engine: Engine,
        queue_name: str,
        handlers: Mapping[str, Handler],
        *,
        inbox: Table,
        outbox: Table,
        publish: Publish | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        own_inbox: frozenset[str] = frozenset(),
        nearby: Nearby | None = None,
    ):
        self.engine = engine
        self.queue_name = queue_name
        self.handlers = handlers
        self.inbox = inbox
        self.outbox = outbox
        self.publish = publish
        self.batch_handlers = batch_handlers or {}
        self.own_inbox = own_inbox
        self.nearby = nearby

    def together(self, envelopes: list[Envelope]) -> None:
        """Handle envelopes in one transaction, in order, each by its type's handler (which the
        caller has checked there is); raises if any fails, and then nothing of them commits."""
        with tracer().processing(envelopes, self.queue_name):
            with (
                self.engine.begin() as connection,
                resuming.deciding(functools.partial(self._decide, connection)),
            ):
                after_commit.begin(connection)
                messages = [(envelope.message_id, envelope.type) for envelope in envelopes]
                firsts = first_deliveries(connection, self.inbox, messages, self.own_inbox)
                handled = []
                for envelope, first in zip(envelopes, firsts, strict=True):
                    if first:
                        handled.append(envelope)
                    else:
                        log.info("duplicate message ignored", extra=envelope.log_fields)
                caused = []
                # In order; a run of messages of one type with a batch handler goes to it at once.
                for kind, run in itertools.groupby(handled, key=lambda envelope: envelope.type):
                    if kind in self.batch_handlers:
                        caused += self.batch_handlers[kind](connection, list(run))
                    else:
                        for envelope in run:
                            caused += self.handlers[kind](connection, envelope)
                caused = self._handled_nearby(connection, caused, envelopes)
                written = add_to_outbox(connection, self.outbox, caused)
                committed = after_commit.registered(connection)
            self._after(committed, written)
            for envelope in handled:
                self._log_handled(envelope)

    def once(self, envelope: Envelope, *, with_nearby: bool = True) -> bool:
        """Handle envelope in one transaction (with the nearby consumer, if any and with_nearby);
        False if it had been handled before."""
        with tracer().processing([envelope], self.queue_name):
            with self.engine.begin() as connection:
                after_commit.begin(connection)
                if envelope.type not in self.own_inbox and not first_delivery(
                    connection, self.inbox, envelope.message_id, envelope.type
                ):
                    log.info("duplicate message ignored", extra=envelope.log_fields)
                    return False
                with resuming.deciding(functools.partial(self._decide, connection) if with_nearby else None):
                    caused = self.handlers[envelope.type](connection, envelope)
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
            with tracer().processing([parked], self.queue_name):
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
        """Once the transaction committed: the outbox rows it wrote go to the relay, then what its
        handlers left to do (after_commit). None of it raises: the transaction stays committed,
        and what did not happen here the relay's sweep and the lease loop make up for."""
        if written and self.publish is not None:
            after_commit.run([lambda: self.publish(written)])
        after_commit.run(committed)
