"""Customer master data rules (pure: no I/O)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    email: str
    version: int


@dataclasses.dataclass(frozen=True)
class Upsert:
    customer: Customer
    outcome: str  # customer.registered | customer.updated
    changed: bool


def upsert(existing: Customer | None, customer_id: str, name: str, email: str) -> Upsert:
    """Register a new customer at version 1, or update one, raising the version only on change."""
    if existing is None:
        return Upsert(Customer(customer_id, name, email, 1), "customer.registered", changed=True)
    if (existing.name, existing.email) == (name, email):
        return Upsert(existing, "customer.updated", changed=False)
    updated = Customer(customer_id, name, email, existing.version + 1)
    return Upsert(updated, "customer.updated", changed=True)
