"""A visit's course (pure: no I/O).

A visit asks both sides (the desk, `appointment`, and the workshop, `maintenance`) to hold its slot,
then confirms both or releases both:

    holding ──both held──▶ confirming ──both confirmed──▶ booked ──visit.cancel──▶ releasing
       │                       │                                                     │
       └─refused or expired────┴──────expired (a confirm came too late)─────▶ releasing
                                                                                     │
                                                         both released ──▶ rejected | canceled

What a side says only moves forward (pending → held or refused → confirmed or expired →
released): an answer repeated or overtaken by a later one changes nothing.
"""

from __future__ import annotations

import dataclasses

from messaging.vocabulary import CONFIRMED, EXPIRED, HELD, REFUSED, RELEASED, RESERVATION_EXPIRED

SIDES = ("appointment", "maintenance")
PENDING = "pending"

HOLDING = "holding"
CONFIRMING = "confirming"
BOOKED = "booked"
RELEASING = "releasing"
REJECTED = "rejected"
CANCELED = "canceled"
FAILED = "failed"  # its customer's copy did not catch up in time: no side was ever asked
DECIDED = (BOOKED, REJECTED, FAILED)  # what a visit.cancel waits for
ENDED = (REJECTED, CANCELED, FAILED)

_RANK = {PENDING: 0, HELD: 1, REFUSED: 1, CONFIRMED: 2, EXPIRED: 2, RELEASED: 3}

# What the visits context does after a step: ask both sides to confirm or to release, or answer
# the client (the visit.book's result, or the visit.cancel's).
CONFIRM, RELEASE, ANSWER = "confirm", "release", "answer"


@dataclasses.dataclass(frozen=True)
class Visit:
    state: str = HOLDING
    sides: tuple[tuple[str, str], ...] = tuple((side, PENDING) for side in SIDES)
    reason: str | None = None
    canceling: bool = False

    def side(self, name: str) -> str:
        return dict(self.sides)[name]

    def answered(self, side: str, step: str, reason: str | None = None) -> tuple[Visit, str | None]:
        """The visit once side said step (with a refusal's reason); and what to do now, if anything."""
        if side not in SIDES or step not in _RANK:
            raise ValueError(f"unknown answer {side!r}: {step!r}")
        sides = dict(self.sides)
        if _RANK[step] <= _RANK[sides[side]]:
            return self, None
        sides[side] = step
        visit = dataclasses.replace(self, sides=tuple(sides.items()))
        return visit._next(reason)

    def cancel(self) -> tuple[Visit, str | None]:
        """A visit.cancel of a booked visit releases both sides; of any other, nothing (not_found)."""
        if self.state != BOOKED:
            return self, None
        return dataclasses.replace(self, state=RELEASING, canceling=True), RELEASE

    def _next(self, reason: str | None) -> tuple[Visit, str | None]:
        said = set(dict(self.sides).values())
        if self.state in (HOLDING, CONFIRMING) and said & {REFUSED, EXPIRED}:
            # A refusal gives its reason; an expired hold (or a confirm that came too late) its own.
            return dataclasses.replace(self, state=RELEASING, reason=reason or RESERVATION_EXPIRED), RELEASE
        if self.state == HOLDING and said == {HELD}:
            return dataclasses.replace(self, state=CONFIRMING), CONFIRM
        if self.state == CONFIRMING and said == {CONFIRMED}:
            return dataclasses.replace(self, state=BOOKED), ANSWER
        if self.state == RELEASING and said == {RELEASED}:
            return dataclasses.replace(self, state=CANCELED if self.canceling else REJECTED), ANSWER
        return self, None
