"""Runs the gateway's and the contexts' loops as threads of one process, and stops them cleanly."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from sqlalchemy import Engine, Table

from gateway import tables as gateway_tables
from gateway.callbacks import CallbackDispatcher
from gateway.config import Settings
from gateway.results import record_in_place, record_result, record_results
from messaging import broker, topology, vocabulary
from messaging.background_relay import BackgroundRelay
from messaging.consumer import MessageWorker
from messaging.context import ContextSpec
from messaging.dead_letters import DeadLetterKeeper
from messaging.heartbeat import Heartbeat
from messaging.inbox import InboxPruner
from messaging.nearby import Nearby
from messaging.relay import KEEP_PUBLISHED, SWEEP_AFTER, OutboxRelay
from messaging.wakeup import Wakeup
from taskgate import registry, tables

log = logging.getLogger(__name__)


def declare_topology(url: str) -> None:
    """Declare every exchange and queue up front, so nothing is published before its queue exists.

    A process that starts while the broker is down, or while it is still starting (it may take the
    connection and then drop it), waits for it and declares everything again rather than giving up.
    """
    with broker.connect(url) as connection:
        declare_everything = connection.autoretry(
            _declare_everything,
            errback=lambda error, interval: log.warning(
                "broker unreachable (%s); retrying in %.0f s", error, interval
            ),
            max_retries=None,
            interval_start=0.5,
            interval_step=1,
            interval_max=5,
        )
        _, channel = declare_everything()
        channel.close()


def _declare_everything(channel) -> None:
    for exchange in topology.EXCHANGES.values():
        exchange(channel).declare()
    for queue in [*registry.QUEUES, topology.dead_letters]:
        queue(channel).declare()
    for queue, exchange, key in registry.RETIRED_BINDINGS:
        queue(channel).unbind_from(exchange, key)


def webhook_relay(settings: Settings, engine: Engine) -> BackgroundRelay | None:
    """The relay of a webhook process that runs no workers (each gunicorn worker): it publishes
    the tasks accepted there right after their commit; create_app(publish=relay and relay.offer).

    None on the in-process broker, which would be this process's own, read by no worker: the tasks
    then stay in the outbox for `taskgate serve` on the same database to sweep and publish."""
    if broker.is_volatile(settings.broker_url):
        log.warning(
            "no TASKGATE_BROKER_URL: the tasks accepted here wait in the outbox for `taskgate serve` "
            "on the same database; workers apart need RabbitMQ"
        )
        return None
    return BackgroundRelay(
        lambda: OutboxRelay(
            engine,
            gateway_tables.outbox,
            broker.connect(settings.broker_url, confirm_each=False),
            sweep_after=None,
        ),
        prepare=lambda: declare_topology(settings.broker_url),
    )


class Runtime:
    """The loops of some contexts, sharing one engine; start() them, then stop()."""

    def __init__(self, settings: Settings, engine: Engine, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.environ = environ
        self.engine = engine
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wakeups: list[Wakeup] = []
        self._relays: dict[str, OutboxRelay] = {}
        self._connections: list = []
        self._relay_options: dict = {}  # what this process's relays keep and sweep (see start)

    def relay(self, outbox: Table) -> OutboxRelay:
        """The relay of outbox in this process (started with its context): other writers of this
        process (the webhook of `serve`) offer it what they committed."""
        return self._relays[outbox.name]

    def start(self, contexts: Iterable[str], role: str = "worker") -> None:
        contexts = list(contexts)
        # The in-process broker is this process's own: were a process without every context to
        # sweep the rows others left in the outboxes, it would publish some where nobody reads,
        # and keep them marked published, out of others' sweeps. It publishes only what it writes.
        volatile = broker.is_volatile(self.settings.broker_url)
        sweeps = not volatile or set(contexts) >= set(registry.NAMES)
        self._relay_options = {
            "keep_published": KEEP_PUBLISHED if volatile else None,
            "sweep_after": SWEEP_AFTER if sweeps else None,
        }
        declare_topology(self.settings.broker_url)
        dispatcher = nearby = None
        if "gateway" in contexts:
            dispatcher = self._dispatcher()
            # With the gateway here, each context's transaction records the results it decides.
            recording = functools.partial(record_in_place, offer=dispatcher.offer)
            nearby = Nearby(recording)
        inboxes = []
        for name in contexts:
            spec = registry.spec(name, self.environ)
            inboxes.append(spec.inbox)
            if name == "gateway":
                self._start_gateway(spec, dispatcher)
            else:
                self._start_context(spec, nearby)
        if self.settings.inbox_keep_days:
            pruner = InboxPruner(self.engine, inboxes, timedelta(days=self.settings.inbox_keep_days))
            self._spawn("inbox-pruner", pruner.run)
        heartbeat = Heartbeat(
            self.engine,
            tables.processes,
            role=role,
            contexts=contexts,
            interval=self.settings.heartbeat_seconds,
            threads_down=self.threads_down,
        )
        self._spawn("heartbeat", heartbeat.run)

    def threads_down(self) -> list[str]:
        """Loops that ended although the process was not asked to stop."""
        if self.stopping.is_set():
            return []
        return [thread.name for thread in self._threads if not thread.is_alive()]

    def _start_context(self, spec: ContextSpec, nearby: Nearby | None = None) -> None:
        """A context's consumer, relay and parking sweeper. The consumer and the sweeper offer the
        relay the outbox rows they committed; rows another process left behind are swept."""
        relay = OutboxRelay(
            self.engine,
            spec.outbox,
            self._connect(confirm_each=False),
            **self._relay_options,
        )
        self._relays[spec.outbox.name] = relay
        self._wakeups.append(relay.wakeup)
        worker = MessageWorker(
            self._connect(),
            spec.queue,
            spec.handlers,
            self.engine,
            inbox=spec.inbox,
            outbox=spec.outbox,
            publish=relay.offer,
            batch_handlers=spec.batch_handlers,
            linger=self.settings.batch_linger_ms / 1000,
            own_inbox=spec.own_inbox,
            nearby=nearby,
        )
        self._spawn(f"{spec.name}-relay", relay.run)
        self._spawn(f"{spec.name}-consumer", worker.run_until)
        for number, make_loop in enumerate(spec.loops):
            self._spawn(f"{spec.name}-loop-{number}", make_loop(self.engine, relay.offer))

    def _dispatcher(self) -> CallbackDispatcher:
        return CallbackDispatcher(
            self.engine,
            Wakeup(),  # results and callbacks of this process: in-process suffices
            timeout=self.settings.callback_timeout_seconds,
            schedule=self.settings.callback_retry_schedule,
            allow_private=self.settings.allow_private_callbacks,
            concurrency=self.settings.callback_concurrency,
            per_client=self.settings.callback_concurrency_per_client,
            linger=self.settings.batch_linger_ms / 1000,
        )

    def _start_gateway(self, spec: ContextSpec, dispatcher: CallbackDispatcher) -> None:
        # Results recorded here hand their fresh deliveries to this process's dispatcher.
        recording = functools.partial(record_result, offer=dispatcher.offer)
        recording_batches = functools.partial(record_results, offer=dispatcher.offer)
        spec = dataclasses.replace(
            spec,
            handlers={**spec.handlers, vocabulary.TASK_RESULT: recording},
            batch_handlers={**spec.batch_handlers, vocabulary.TASK_RESULT: recording_batches},
        )
        # The dispatcher's lease loop is woken when recorded deliveries are left to it (offer).
        self._start_context(spec)
        self._spawn("gateway-callbacks", dispatcher.run)
        keeper = DeadLetterKeeper(self._connect(), self.engine, gateway_tables.dead_letters)
        self._spawn("gateway-dead-letters", keeper.run_until)

    def _connect(self, *, confirm_each: bool = True):
        connection = broker.connect(self.settings.broker_url, confirm_each=confirm_each)
        self._connections.append(connection)
        return connection

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def run() -> None:
            try:
                target(self.stopping)
            except Exception:
                log.exception("%s crashed; stopping the process", name)
                self.stopping.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        """Let in-flight messages finish (unacked ones are redelivered later), then return."""
        self.stopping.set()
        for wakeup in self._wakeups:
            wakeup.close()
        for thread in self._threads:
            thread.join(timeout)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            log.warning("threads still running at exit: %s", ", ".join(alive))
            return
        for connection in self._connections:
            connection.release()
