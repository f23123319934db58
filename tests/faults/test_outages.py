"""Nothing lost, nothing doubled while the broker restarts, the database goes away, or the gateway
dies between accept and publish (on PostgreSQL + RabbitMQ). Each scenario ends with the same
invariant check and prints one summary line. Select them with `-m faults`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.tables import outbox as gateway_outbox
from tests import backends
from tests.factories import survey_task, wait_for
from tests.faults.system import wait_until_settled
from tests.faults.waves import CUSTOMERS, check_invariants, first_wave, second_wave, send_all

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _rabbitmq(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def _rabbitmq_running() -> bool:
    return (
        subprocess.run(
            ["rabbitmq-diagnostics", "-q", "check_running"], capture_output=True, timeout=60
        ).returncode
        == 0
    )


def through_an_outage(deployment, begin, end, while_down=lambda system: None) -> list[dict]:
    """Send half the first wave, begin() an outage, keep sending (the client is told 503 and tries
    again), end() it, then send the rest; returns every task sent, all settled."""
    system, engine, _, _, client = deployment
    system.start_http()
    system.start_all()
    first, second = first_wave(), second_wave()
    half = len(first) // 2
    send_all(client, first[:half])
    outage_over = threading.Event()
    during: list[dict] = []

    def keep_sending():
        """The rest of the first wave, then more surveys until the outage is over: the webhook is
        asked while it cannot accept, however quickly the rest of the wave went through."""
        send_all(client, first[half:])
        while not outage_over.is_set():
            task = survey_task(f"S-during-{len(during)}", customer_id=f"C-{len(during) % CUSTOMERS}")
            during.append(task)
            client.send(task)

    begin()
    sender = threading.Thread(target=keep_sending, daemon=True)
    try:
        sender.start()
        wait_for(lambda: client.statuses.count(503) >= 10, timeout=60, message="the webhook to answer 503")
        while_down(system)
    finally:
        end()
        outage_over.set()
    sender.join(180)
    assert not sender.is_alive()
    assert 500 not in client.statuses
    wait_until_settled(engine, [task["task_id"] for task in first + during])
    send_all(client, second)
    sent = first + during + second
    wait_until_settled(engine, [task["task_id"] for task in sent])
    return sent


def test_the_broker_restarts_mid_flow(deployment):
    backends.require(shutil.which("rabbitmqctl"), "rabbitmqctl (to restart the local RabbitMQ)")
    _, engine, receiver, _, client = deployment

    def broker_back():
        _rabbitmq("start_app")
        wait_for(_rabbitmq_running, timeout=120, interval=1, message="RabbitMQ back")

    sent = through_an_outage(deployment, lambda: _rabbitmq("stop_app"), broker_back)
    check_invariants(
        engine, receiver, sent, "broker restart", restarts=1, refused_503=client.statuses.count(503)
    )


def test_the_database_goes_away_for_a_while(deployment):
    _, engine, receiver, proxy, client = deployment

    def readiness_says_so(system):
        ready = requests.get(f"{system.base_url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "down"

    sent = through_an_outage(deployment, proxy.cut, proxy.restore, while_down=readiness_says_so)
    check_invariants(
        engine, receiver, sent, "database outage", outages=1, refused_503=client.statuses.count(503)
    )


@contextlib.contextmanager
def publishing_blocked():
    """RabbitMQ's memory alarm at a watermark of 0: every connection that publishes is blocked,
    while connecting (the webhook's broker probe) still works."""
    backends.require(shutil.which("rabbitmqctl"), "rabbitmqctl (to block publishing)")
    _rabbitmq("set_vm_memory_high_watermark", "0")
    try:
        yield
    finally:
        _rabbitmq("set_vm_memory_high_watermark", "0.4")


def test_the_gateway_dies_between_accept_and_publish(deployment):
    """The webhook's process publishes what it accepts right after the commit; here the broker
    blocks its publishing and it is killed (-9) with the tasks committed but never published:
    the workers' relay sweeps them from the outbox."""
    system, engine, receiver, _, client = deployment
    system.start_http()
    first = first_wave()
    with publishing_blocked():
        send_all(client, first)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(gateway_outbox)) == len(first)
        system.http.process.kill()  # kill -9 the HTTP side
        system.http.stop()
        system.http = None
    system.start_all()
    wait_until_settled(engine, [task["task_id"] for task in first])
    check_invariants(engine, receiver, first, "crash before publish", kills=1)
