"""Nothing lost, nothing doubled while taskgate's processes are killed at random or terminated one
after another (on PostgreSQL + RabbitMQ). Each scenario ends with the same invariant check over the
database and the callback receiver and prints one summary line. Select them with `-m faults`.
"""

from __future__ import annotations

import random
import threading

import pytest

from tests.factories import wait_for
from tests.faults.system import WORKERS, wait_until_settled
from tests.faults.waves import check_invariants, first_wave, second_wave, send_all

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


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
