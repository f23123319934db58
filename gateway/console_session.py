"""The operator console's sessions: a cookie that holds an expiry and an HMAC keyed by the operator
token (never the token itself), a CSRF token per session, where a form may come from and where a
sign-in may send the browser."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import request

COOKIE = "taskgate_console"
SESSION_SECONDS = 12 * 3600


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def session_cookie(token: str, now: float) -> str:
    """A session value: its expiry and an HMAC of it keyed by the operator token."""
    expires = int(now) + SESSION_SECONDS
    return f"{expires}.{_mac(token, f'console-session:{expires}')}"


def session_valid(token: str, value: str, now: float) -> bool:
    expires, _, mac = value.partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or int(expires) < now:
        return False
    return equal(mac, _mac(token, f"console-session:{expires}"))


def csrf_token(token: str, session_value: str) -> str:
    return _mac(token, f"console-csrf:{session_value}")


def same_origin() -> bool:
    """Whether a POST comes from a page of this host (when the browser says where it comes from)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    try:
        return urlsplit(source).netloc == request.host
    except ValueError:
        return False


def form_from_console(csrf_token: str) -> bool:
    return same_origin() and equal(request.form.get("csrf_token", ""), csrf_token)


def inside(target: str | None, prefix: str) -> str | None:
    """target if it is a path of this host under prefix (a sign-in's next page), else None."""
    under = target and (target == prefix or target.startswith(prefix + "/"))
    return target if under and "//" not in target and "\\" not in target else None
