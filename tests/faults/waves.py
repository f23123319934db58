"""The fault scenarios' workload (two waves of tasks) and the invariant every scenario ends with:
nothing lost, nothing doubled, every result called back."""

from __future__ import annotations

import collections
import contextlib
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contexts.survey.tables import invitations
from tests.factories import cancel_task, maintenance_task, schedule_task, survey_task, upsert_task, wait_for
from tests.faults.system import Client, outcomes, received_result_ids, wait_until_settled

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
