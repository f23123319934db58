"""Tables of the deployment itself (not of the gateway or a context): worker heartbeats."""

from __future__ import annotations

from sqlalchemy import MetaData

from messaging.heartbeat import make_process_table

metadata = MetaData()

processes = make_process_table(metadata)
