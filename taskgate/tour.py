"""The demo's tour: one task of each type, each with what a newcomer should notice and the results
it should bring."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta


@dataclasses.dataclass(frozen=True)
class Step:
    why: str  # what a newcomer should notice
    task: dict
    expected: dict[str, str]  # context -> outcome of each callback this task should bring


def steps(tomorrow: datetime) -> list[Step]:
    """The tour: one task of each type, a conflicting appointment and a cancel that cascades."""
    slot = tomorrow.replace(hour=9, minute=0, second=0, microsecond=0)
    customer = {"customer_id": "C-42"}
    return [
        Step(
            "Customer master data first: customers stores C-42 and publishes an event the others copy.",
            {
                "task_id": "T-1",
                "type": "customer.upsert",
                **customer,
                "payload": {"name": "Ada Lovelace", "email": "ada@example.com"},
            },
            {"customers": "customer.registered"},
        ),
        Step(
            "A survey: the survey context invites C-42 at the email it copied from that event.",
            {"task_id": "S-1", "type": "survey.assign", **customer, "payload": {"survey_id": "SRV-7"}},
            {"survey": "survey.assigned"},
        ),
        Step(
            f"An appointment on resource room-1, {slot:%Y-%m-%d %H:%M} UTC, 60 min: the calendar is free.",
            {
                "task_id": "A-1",
                "type": "appointment.schedule",
                **customer,
                "payload": {"resource_id": "room-1", "starts_at": slot.isoformat(), "duration_minutes": 60},
            },
            {"appointment": "appointment.scheduled"},
        ),
        Step(
            "Again room-1, same time: the calendar refuses a double booking (a result, not an error).",
            {
                "task_id": "A-2",
                "type": "appointment.schedule",
                **customer,
                "payload": {"resource_id": "room-1", "starts_at": slot.isoformat(), "duration_minutes": 60},
            },
            {"appointment": "appointment.rejected"},
        ),
        Step(
            "A workshop job on bay-1 right after it, linked to appointment A-1.",
            {
                "task_id": "M-1",
                "type": "maintenance.schedule",
                **customer,
                "payload": {
                    "vin": "WVWZZZ1JZXW000001",
                    "position": "bay-1",
                    "starts_at": (slot + timedelta(hours=1)).isoformat(),
                    "duration_minutes": 120,
                    "appointment_task_id": "A-1",
                },
            },
            {"maintenance": "maintenance.scheduled"},
        ),
        Step(
            "Cancel A-1: appointment frees the slot and publishes appointment.canceled, so maintenance\n"
            "   cancels the linked job too: one task, two contexts, two results, two callbacks.",
            {
                "task_id": "X-1",
                "type": "appointment.cancel",
                **customer,
                "payload": {"appointment_task_id": "A-1"},
            },
            {"appointment": "appointment.canceled", "maintenance": "maintenance.canceled"},
        ),
        Step(
            "A service visit: the desk (room-2) and the workshop (bay-2) both hold the slot, then both\n"
            "   confirm it: the visits context books two contexts at once, one result.",
            _visit("V-1", customer, "room-2", "bay-2", slot + timedelta(hours=4)),
            {"visits": "visit.booked"},
        ),
        Step(
            "A second customer, C-43, who wants the workshop at the same time.",
            {
                "task_id": "T-2",
                "type": "customer.upsert",
                "customer_id": "C-43",
                "payload": {"name": "Grace Hopper", "email": "grace@example.com"},
            },
            {"customers": "customer.registered"},
        ),
        Step(
            "C-43's visit, on bay-2 at the same time: the workshop refuses (position_busy), so visits\n"
            "   releases the desk's hold on room-3 first, then answers: both or neither.",
            _visit("V-2", {"customer_id": "C-43"}, "room-3", "bay-2", slot + timedelta(hours=4)),
            {"visits": "visit.rejected"},
        ),
    ]


def _visit(task_id: str, customer: dict, desk: str, bay: str, starts_at: datetime) -> dict:
    return {
        "task_id": task_id,
        "type": "visit.book",
        **customer,
        "payload": {
            "vin": "WVWZZZ1JZXW000002",
            "resource_id": desk,
            "position": bay,
            "starts_at": starts_at.isoformat(),
            "duration_minutes": 60,
        },
    }
