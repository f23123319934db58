"""Client registration and lookup: callback URL, signing secret, API token."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import signatures
from gateway.schemas import CLIENT_ID
from gateway.signatures import SignatureError
from gateway.tables import clients
from gateway.urls import UnsafeURL, check_callback_url
from messaging.db import read_only, utcnow


class ClientError(ValueError):
    """The client cannot be registered as asked (message is safe to print)."""


@dataclasses.dataclass(frozen=True)
class Client:
    client_id: str
    callback_url: str
    signing_secret: str
    previous_signing_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    def secrets(self, now: datetime) -> list[str]:
        """The secrets in force: the current one, and the previous one during its grace period."""
        if (
            self.previous_signing_secret
            and self.previous_secret_expires_at
            and now < self.previous_secret_expires_at
        ):
            return [self.signing_secret, self.previous_signing_secret]
        return [self.signing_secret]


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_client(
    session: Session, client_id: str, callback_url: str, *, allow_private: bool = False
) -> dict[str, str]:
    """Register a client; returns its credentials (the API token is shown only this once)."""
    if not re.fullmatch(CLIENT_ID, client_id):
        raise ClientError(f"client id must match {CLIENT_ID}")
    try:
        check_callback_url(callback_url, allow_private=allow_private)
    except UnsafeURL as error:
        raise ClientError(str(error)) from None
    if _exists(session, client_id):
        raise ClientError(f"client {client_id!r} already exists")
    credentials = {
        "client_id": client_id,
        "callback_url": callback_url,
        "signing_secret": signatures.new_secret(),
        "api_token": "tg_" + secrets.token_urlsafe(32),
    }
    try:
        session.execute(
            insert(clients).values(
                client_id=client_id,
                callback_url=callback_url,
                signing_secret=credentials["signing_secret"],
                api_token_sha256=_token_digest(credentials["api_token"]),
                created_at=utcnow(),
            )
        )
        session.flush()
    except IntegrityError:
        raise ClientError(f"client {client_id!r} already exists") from None
    return credentials


def _exists(session: Session, client_id: str) -> bool:
    return session.scalar(select(clients.c.client_id).where(clients.c.client_id == client_id)) is not None


def list_clients(session: Session) -> list[dict]:
    rows = session.execute(
        select(clients.c.client_id, clients.c.callback_url, clients.c.created_at).order_by(
            clients.c.client_id
        )
    )
    return [
        {"client_id": r.client_id, "callback_url": r.callback_url, "created_at": r.created_at.isoformat()}
        for r in rows
    ]


CLIENT_COLUMNS = (
    clients.c.client_id,
    clients.c.callback_url,
    clients.c.signing_secret,
    clients.c.previous_signing_secret,
    clients.c.previous_secret_expires_at,
)
_FIND_CLIENT = select(*CLIENT_COLUMNS).where(clients.c.client_id == bindparam("client_id"))


def find_client(connection: Connection | Session, client_id: str) -> Client | None:
    row = connection.execute(_FIND_CLIENT, {"client_id": client_id}).one_or_none()
    return Client(*row) if row else None


# Checks a request against a client's valid secrets: its webhook-id, or SignatureError.
Verify = Callable[[list[str]], str]


# A throttled request is checked against the client as read at most this long ago (a rotated
# secret counts from then on), and no id is read more often than that for such requests.
RECENT_SECONDS = 5.0
MAX_READ_TIMES = 10_000


class KnownClients:
    """The clients the webhook has met, as it last read them; only clients that exist are kept.

    A request is verified against the copy kept here, and accept_task stores it only if the
    client's secrets are still those of that copy, in the same statement: a rotated or expired
    secret takes effect at once, and the webhook reads a client again only when a signature fails
    against the copy or the copy turns out stale.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._clients: dict[str, Client] = {}
        self._read_at: dict[str, float] = {}  # client id -> when it was last read

    def signed_by(self, client_id: str, verify: Verify, *, fresh: bool = False) -> tuple[Client, str]:
        """The client whose valid secrets verify the request, and what verify returned for them
        (its webhook-id): the client as last read, or as stored now if that does not verify (or
        fresh is set). Raises SignatureError when neither does, also for a client that does not
        exist (verified against no secrets, so that the answer does not tell the two apart)."""
        refused = None
        for client in self._candidates(client_id, fresh):
            try:
                return client, verify(client.secrets(utcnow()) if client else [])
            except SignatureError as error:
                refused = error
        raise refused

    def recent(self, client_id: str) -> Client | None:
        """The client as read at most RECENT_SECONDS ago: the copy kept here, or read now if the
        last read of this id is older (so at most one read per id in that time, however many
        requests ask: what a throttled request is checked against)."""
        if time.monotonic() - self._read_at.get(client_id, float("-inf")) < RECENT_SECONDS:
            return self._clients.get(client_id)
        return self.refresh(client_id)

    def _candidates(self, client_id: str, fresh: bool):
        """The client as last read (unless fresh), then as stored now if that differs (None: there
        is no such client)."""
        kept = None if fresh else self._clients.get(client_id)
        if kept is not None:
            yield kept
        stored = self.refresh(client_id)
        if kept is None or stored != kept:
            yield stored

    def refresh(self, client_id: str) -> Client | None:
        """The client as stored now (and kept from now on)."""
        if len(self._read_at) >= MAX_READ_TIMES:  # ids made up by the thousand: forget them all
            self._read_at.clear()
        self._read_at[client_id] = time.monotonic()
        with read_only(self.engine).connect() as connection:
            client = find_client(connection, client_id)
        if client is None:
            self._clients.pop(client_id, None)
        else:
            self._clients[client_id] = client
        return client


def rotate_secret(session: Session, client_id: str, grace: timedelta) -> dict[str, str]:
    """Give the client a new signing secret; the current one stays in force for grace."""
    client = find_client(session, client_id)
    if client is None:
        raise ClientError(f"no client {client_id!r}")
    new_secret = signatures.new_secret()
    expires_at = utcnow() + grace
    session.execute(
        update(clients)
        .where(clients.c.client_id == client_id)
        .values(
            signing_secret=new_secret,
            previous_signing_secret=client.signing_secret,
            previous_secret_expires_at=expires_at,
        )
    )
    return {
        "client_id": client_id,
        "signing_secret": new_secret,
        "previous_secret_expires_at": expires_at.isoformat(),
    }


def token_matches(session: Session, client_id: str, token: str) -> bool:
    """True if token is client_id's API token (constant-time comparison of digests)."""
    stored = session.scalar(select(clients.c.api_token_sha256).where(clients.c.client_id == client_id))
    return stored is not None and hmac.compare_digest(stored, _token_digest(token))
