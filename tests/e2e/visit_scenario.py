"""The visits scenario: many visits competing for few desk slots and workshop positions, some
canceled right behind their booking, and a duplicator that delivers a share of the contexts' own
visit messages (holds, confirms, releases, answers) twice and late."""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import UTC, datetime, timedelta

from kombu import Consumer, Producer, Queue, binding

from messaging import broker, topology
from tests.factories import upsert_task, visit_cancel_task, visit_task

CUSTOMERS = 80
VISITS = 500
CANCELED_RIGHT_AWAY = 60  # visit.cancel sent right behind its visit.book
DESKS = ("desk-1", "desk-2", "desk-3")
BAYS = ("bay-1", "bay-2", "bay-3")
DAYS, HOURS = 5, 8  # one-hour slots: 3 desks (and 3 bays) x 40 hours, about four visits for each


def customers() -> list[dict]:
    return [upsert_task(f"U-{n}", customer_id=f"C-{n}", email=f"c{n}@example.com") for n in range(CUSTOMERS)]


def visit_sequence(rng: random.Random) -> list[dict]:
    """The tasks in the order the client sends them."""
    day = datetime(2027, 3, 1, 7, tzinfo=UTC)
    canceled = set(rng.sample(range(VISITS), CANCELED_RIGHT_AWAY))
    sequence = []
    for n in range(VISITS):
        starts_at = (day + timedelta(days=rng.randrange(DAYS), hours=rng.randrange(HOURS))).isoformat()
        customer = f"C-{rng.randrange(CUSTOMERS)}"
        sequence.append(
            visit_task(
                f"V-{n}",
                starts_at,
                customer_id=customer,
                resource_id=rng.choice(DESKS),
                position=rng.choice(BAYS),
                vin=f"WVWZZZ1JZXW{n:06d}",
            )
        )
        if n in canceled:
            sequence.append(visit_cancel_task(f"X-{n}", f"V-{n}", customer_id=customer))
    return sequence


class Duplicator:
    """Delivers a share of the visit messages between the contexts a second time, a little later
    and out of order (as redeliveries after a lost ack would): every step must be idempotent."""

    QUEUE = Queue(
        "taskgate.test-visit-duplicates",
        bindings=[binding(topology.events, routing_key="visit.#")],
        durable=False,
        auto_delete=True,
    )

    def __init__(self, broker_url: str, rng: random.Random, share: float = 0.3):
        self.broker_url = broker_url
        self.rng = rng
        self.share = share
        self.duplicated = 0
        self._stop = threading.Event()
        self._held: list = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(30), "the duplicator did not start"
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with broker.connect(self.broker_url) as connection:
            channel = connection.channel()
            producer = Producer(channel)
            with Consumer(channel, [self.QUEUE], callbacks=[self._take], accept=["json"]):
                self._ready.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.2)
                    self._send_some(producer, all_of_them=False)
                self._send_some(producer, all_of_them=True)

    def _take(self, body, message) -> None:
        if not (message.headers or {}).get("x-test-duplicate") and self.rng.random() < self.share:
            self._held.append(message)
        message.ack()

    def _send_some(self, producer: Producer, all_of_them: bool) -> None:
        self.rng.shuffle(self._held)
        count = len(self._held) if all_of_them else len(self._held) // 2
        for message in self._held[:count]:
            producer.publish(
                message.body,
                exchange=topology.events,
                routing_key=message.delivery_info["routing_key"],
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                message_id=message.properties.get("message_id"),
                correlation_id=message.properties.get("correlation_id"),
                headers={**(message.headers or {}), "x-test-duplicate": "1"},
            )
            self.duplicated += 1
        del self._held[:count]
