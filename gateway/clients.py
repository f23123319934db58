"""Client registration and lookup: callback URL, signing secret, API token."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import signatures
from gateway.schemas import CLIENT_ID
from gateway.tables import clients
from messaging.db import utcnow


class ClientError(ValueError):
    """The client cannot be registered as asked (message is safe to print)."""


@dataclasses.dataclass(frozen=True)
class Client:
    client_id: str
    callback_url: str
    signing_secret: str


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_client(session: Session, client_id: str, callback_url: str) -> dict[str, str]:
    """Register a client; returns its credentials (the API token is shown only this once)."""
    if not re.fullmatch(CLIENT_ID, client_id):
        raise ClientError(f"client id must match {CLIENT_ID}")
    parts = urlsplit(callback_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError("callback URL must be an absolute http(s) URL")
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


def find_client(session: Session, client_id: str) -> Client | None:
    row = session.execute(
        select(clients.c.client_id, clients.c.callback_url, clients.c.signing_secret).where(
            clients.c.client_id == client_id
        )
    ).one_or_none()
    return Client(*row) if row else None


def token_matches(session: Session, client_id: str, token: str) -> bool:
    """True if token is client_id's API token (constant-time comparison of digests)."""
    stored = session.scalar(select(clients.c.api_token_sha256).where(clients.c.client_id == client_id))
    return stored is not None and hmac.compare_digest(stored, _token_digest(token))
