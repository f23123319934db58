"""The gateway's own tables: clients, tasks, results with their deliveries, and its inbox/outbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from messaging.db import JsonDocument, UtcDateTime
from messaging.dead_letters import make_dead_letter_table
from messaging.inbox import make_inbox_table
from messaging.outbox import make_outbox_table

metadata = MetaData()

clients = Table(
    "gateway_clients",
    metadata,
    Column("client_id", String(63), primary_key=True),
    Column("callback_url", String(2048), nullable=False),
    Column("signing_secret", String(200), nullable=False),
    # After a rotation the previous secret still verifies and co-signs until it expires.
    Column("previous_signing_secret", String(200)),
    Column("previous_secret_expires_at", UtcDateTime),
    Column("api_token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# A task's status from its arrival until its primary context decides (or parks it: "waiting").
ACCEPTED = "accepted"

tasks = Table(
    "gateway_tasks",
    metadata,
    Column("task_uuid", Uuid, primary_key=True),
    Column("client_id", String(63), ForeignKey("gateway_clients.client_id"), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The task's place in its customer's order (see customer_order); none for older tasks.
    Column("customer_seq", Integer),
    # Why a `waiting` task waits (e.g. unknown_customer, customer_outdated, target_undecided).
    Column("waiting_reason", String(32)),
    # The idempotency guarantee: one task per client and task-id, whatever the interleaving.
    UniqueConstraint("client_id", "task_id", name="uq_gateway_tasks_client_task"),
    Index("ix_gateway_tasks_client_received", "client_id", "received_at", "task_uuid"),
    Index("ix_gateway_tasks_status_received", "status", "received_at"),
)

# Per customer of a client: the place of the last task accepted (last_seq) and of the last
# customer.upsert among them (last_upsert_seq), and what last_upsert_seq was before the last place
# was taken (given back if that place's task turns out to be a replay). Taken and raised in each
# accept transaction, whose row lock makes the places follow the order in which the tasks are accepted.
customer_order = Table(
    "gateway_customer_order",
    metadata,
    Column("client_id", String(63), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("last_upsert_seq", Integer, nullable=False),
    Column("previous_upsert_seq", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("client_id", "customer_id"),
)

# A result and its delivery to the client's callback are one row: every result is called back.
results = Table(
    "gateway_results",
    metadata,
    Column("result_id", Uuid, primary_key=True),
    Column("task_uuid", Uuid, ForeignKey("gateway_tasks.task_uuid"), nullable=False, index=True),
    Column("context", String(32), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("result", JsonDocument, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    # Its delivery: recorded (created_at) for the client, pending until delivered or failed.
    Column("client_id", String(63), ForeignKey("gateway_clients.client_id"), nullable=False),
    Column("delivery_status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    # Attempts made before the latest replay: the retry schedule starts over from there.
    Column("replayed_after_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("next_attempt_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    # The W3C trace context the attempts continue (of the result's handling), when tracing is on.
    Column("trace", JsonDocument),
    Index("ix_gateway_results_due", "delivery_status", "next_attempt_at"),
    # Each client's share of undelivered callbacks is counted from this (backpressure).
    Index(
        "ix_gateway_results_pending_client",
        "client_id",
        postgresql_where=text("delivery_status = 'pending'"),
        sqlite_where=text("delivery_status = 'pending'"),
    ),
)

delivery_attempts = Table(
    "gateway_delivery_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("result_id", Uuid, ForeignKey("gateway_results.result_id"), nullable=False, index=True),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("response_body", Text),
)

# The steps a task went through between the contexts that are no results (a visit's holds,
# confirms and releases, and each side's answers), for its timeline.
task_steps = Table(
    "gateway_task_steps",
    metadata,
    Column("message_id", Uuid, primary_key=True),
    Column("task_uuid", Uuid, nullable=False, index=True),
    Column("context", String(32), nullable=False),
    Column("step", String(32), nullable=False),
    Column("detail", JsonDocument, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
)

dead_letters = make_dead_letter_table(metadata, "gateway")
inbox = make_inbox_table(metadata, "gateway")
outbox = make_outbox_table(metadata, "gateway")
