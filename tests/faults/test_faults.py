"""Nothing lost, nothing doubled: taskgate on PostgreSQL + RabbitMQ while its processes are killed,
the broker restarts, the database goes away, or the gateway dies between accept and publish.

Each scenario ends with the same invariant check over the database and the callback receiver and
prints one summary line. Select them with `-m faults`.
"""

from __future__ import annotations

import collections
import contextlib
import random
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from contexts.survey.tables import invitations
from gateway.tables import outbox as gateway_outbox
from messaging.db import make_engine
from tests import backends
from tests.e2e.helpers import environment
from tests.factories import (
    cancel_task,
    maintenance_task,
    register_client,
    schedule_task,
    survey_task,
    upsert_task,
    wait_for,
)
from tests.faults.system import WORKERS, Client, System, outcomes, received_result_ids, wait_until_settled
from tests.receiver import Receiver
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CUSTOMERS = 30
DAY = datetime(2026, 12, 1, 8, tzinfo=UTC)


def first_wave() -> list[dict]:
    """210 mixed tasks in a shuffled order (so that many wait for their customer first)."""
    wave = []
    for c in range(CUSTOMERS):
        customer = f"C-{c}"
        wave.append(upsert_task(f"U-{c}", customer_id=customer, email=f"c{c}@example.com"))
        wave += [survey_task(f"S-{c}-{k}", customer_id=customer) for k in range(2)]
        # each appointment on its own resource and time: none may ever be rejected
        wave += [
            schedule_task(
                f"A-{c}-{k}",
                (DAY + timedelta(hours=k)).isoformat(),
                customer_id=customer,
                resource_id=f"R-{c}-{k}",
            )
            for k in range(3)
        ]
        wave.append(
            maintenance_task(
                f"M-{c}",
                (DAY + timedelta(days=1)).isoformat(),
                position=f"bay-{c}",
                customer_id=customer,
                appointment_task_id=f"A-{c}-0",
            )
        )
    random.Random(11).shuffle(wave)
    return wave


def second_wave() -> list[dict]:
    """Cancels of half the first appointments: each cascades to its maintenance job."""
    return [cancel_task(f"X-{c}", f"A-{c}-0", customer_id=f"C-{c}") for c in range(0, CUSTOMERS, 2)]


EXPECTED = {
    "U": [("customers", "customer.registered")],
    "S": [("survey", "survey.assigned")],
    "A": [("appointment", "appointment.scheduled")],
    "M": [("maintenance", "maintenance.scheduled")],
    "X": [("appointment", "appointment.canceled"), ("maintenance", "maintenance.canceled")],
}


@pytest.fixture
def deployment(tmp_path, postgres_database):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    url = make_url(postgres_database.url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy, Receiver() as receiver:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = environment(
            TASKGATE_DATABASE_URL=proxied,
            TASKGATE_BROKER_URL=broker_url,
            TASKGATE_CALLBACK_TIMEOUT_SECONDS="2",
            TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.5,1,1,2,2,3,5,5,10,10,20,30",
            TASKGATE_LOG_LEVEL="WARNING",
        )
        engine = make_engine(postgres_database.url)
        credentials = register_client(engine, callback_url=receiver.url)
        system = System(env, tmp_path)
        try:
            yield system, engine, receiver, proxy, Client(system.base_url, credentials)
            system.wait_until_started(engine)
        finally:
            codes = system.stop()
            engine.dispose()
        assert all(code in (0, -9) for code in codes), system.logs()


def send_all(client: Client, wave: list[dict]) -> None:
    for task in wave:
        client.send(task)


def check_invariants(engine, receiver, sent: list[dict], scenario: str, **counts) -> None:
    """Every task has exactly its expected results, stored once; every result reached the receiver.

    A task settles with its primary result; a cascaded one (maintenance after a cancel) may still be
    on its way, e.g. while a just-restarted worker starts: lost means not there within the deadline."""

    def missing(found):
        return [
            t
            for t in sent
            if collections.Counter(EXPECTED[t["task_id"].split("-")[0]])
            - collections.Counter(found.get(t["task_id"], []))
        ]

    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: not missing(outcomes(engine)), timeout=120, interval=0.5, message="every expected result"
        )
    wait_until_settled(engine, [task["task_id"] for task in sent])
    found = outcomes(engine)
    lost, doubled = [], []
    for task in sent:
        expected = collections.Counter(EXPECTED[task["task_id"].split("-")[0]])
        actual = collections.Counter(found.get(task["task_id"], []))
        if actual - expected or any(actual[key] > 1 for key in actual):
            doubled.append((task["task_id"], dict(actual)))
        if expected - actual:
            lost.append((task["task_id"], dict(actual)))
    with Session(engine) as session:
        invitation_count = session.scalar(select(func.count()).select_from(invitations))
    surveys = sum(task["type"] == "survey.assign" for task in sent)
    delivered = received_result_ids(receiver)
    stored_results = sum(len(results) for results in found.values())
    result_ids = set(delivered)
    undelivered = stored_results - len(result_ids)
    repeats = len(delivered) - len(result_ids)
    extras = " ".join(f"{key}={value}" for key, value in counts.items())
    print(
        f"\n{scenario}: {len(sent)} tasks, {extras}, lost={len(lost)}, duplicated={len(doubled)}, "
        f"results={stored_results}, callbacks={len(delivered)} (repeated webhook-ids: {repeats}), "
        f"undelivered={undelivered}"
    )
    assert lost == [] and doubled == []
    assert invitation_count == surveys
    assert undelivered == 0


def run_waves(system: System, engine, client: Client) -> list[dict]:
    first, second = first_wave(), second_wave()
    send_all(client, first)
    wait_until_settled(engine, [task["task_id"] for task in first])
    send_all(client, second)
    sent = first + second
    wait_until_settled(engine, [task["task_id"] for task in sent])
    return sent


def test_worker_processes_killed_at_random(deployment):
    system, engine, receiver, _, client = deployment
    system.start_http()
    system.start_all(per_context=2)
    rng = random.Random(5)
    chaos = threading.Event()

    def kill_now_and_then():
        while not chaos.wait(rng.uniform(0.3, 0.9)):
            system.kill_random(rng)

    killer = threading.Thread(target=kill_now_and_then, daemon=True)
    killer.start()
    first, second = first_wave(), second_wave()
    send_all(client, first)
    wait_for(lambda: system.kills >= 10, timeout=60, message="ten kills")
    wait_until_settled(engine, [task["task_id"] for task in first])
    send_all(client, second)
    wait_for(lambda: system.kills >= 15, timeout=60, message="fifteen kills")
    chaos.set()
    killer.join(30)
    sent = first + second
    wait_until_settled(engine, [task["task_id"] for task in sent])
    check_invariants(engine, receiver, sent, "worker kills", kills=system.kills, restarts=system.restarts)
    assert system.kills >= 15
    assert {context for context in system.workers} == {
        "gateway",
        "customers",
        "survey",
        "appointment",
        "maintenance",
    }


def test_every_process_terminated_mid_flow_stops_cleanly(deployment):
    """A rolling restart by SIGTERM while tasks flow: each process finishes what it holds and exits
    0; what it had not committed is redelivered to its successor, nothing accepted is lost."""
    system, engine, receiver, _, client = deployment
    system.start_http()
    system.start_all(per_context=2)
    first, second = first_wave(), second_wave()
    sender = threading.Thread(target=send_all, args=(client, first), daemon=True)
    sender.start()
    codes = {}
    for target in ("http", *WORKERS):
        wait_for(lambda: len(client.statuses) >= 20 * (len(codes) + 1), timeout=120, message="tasks flowing")
        codes[target] = system.terminate_and_restart(target)
    sender.join(180)
    wait_until_settled(engine, [task["task_id"] for task in first])
    send_all(client, second)
    sent = first + second
    wait_until_settled(engine, [task["task_id"] for task in sent])
    check_invariants(engine, receiver, sent, "rolling SIGTERM", terminated=sum(map(len, codes.values())))
    assert all(code == 0 for exit_codes in codes.values() for code in exit_codes), codes
    assert 500 not in client.statuses


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
