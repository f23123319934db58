"""Customer master data rules (pure: no I/O)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    email: str
    version: int
    # The place, in the customer's order of accepted tasks, of the upsert this state comes from
    # (0: none known, e.g. stored before places were kept).
    seq: int = 0


@dataclasses.dataclass(frozen=True)
class Upsert:
    customer: Customer  # the state that stands afterwards
    outcome: str  # customer.registered | customer.updated
    changed: bool  # name or email changed (a new version)
    superseded: bool = False  # an upsert accepted later was applied already: nothing changes


def upsert(existing: Customer | None, customer_id: str, name: str, email: str, seq: int = 0) -> Upsert:
    """Register a new customer at version 1, or update one, raising the version only on change.
    An upsert accepted before the one whose state is stored (a lower seq) changes nothing; one
    without a place (seq 0) applies as it comes."""
    if existing is None:
        return Upsert(Customer(customer_id, name, email, 1, seq), "customer.registered", changed=True)
    if seq and existing.seq >= seq:
        return Upsert(existing, "customer.updated", changed=False, superseded=True)
    seq = max(seq, existing.seq)
    if (existing.name, existing.email) == (name, email):
        same = existing if seq == existing.seq else dataclasses.replace(existing, seq=seq)
        return Upsert(same, "customer.updated", changed=False)
    return Upsert(
        Customer(customer_id, name, email, existing.version + 1, seq), "customer.updated", changed=True
    )
