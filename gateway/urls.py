"""Callback URLs must not point into our own network (SSRF), unless allowed for local development."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    """The URL is not an acceptable callback target (message is safe to show)."""


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeURL unless url is absolute http(s) and, unless allowed, every address its host
    resolves to is public (not private, loopback, link-local, multicast, reserved or unspecified)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("callback URL must be an absolute http(s) URL")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {
            info[4][0] for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        }
    except (OSError, ValueError, UnicodeError) as error:
        raise UnsafeURL(f"callback host {parts.hostname!r} does not resolve: {error}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise UnsafeURL(
                f"callback host {parts.hostname!r} resolves to a non-public address ({ip}); "
                "set TASKGATE_ALLOW_PRIVATE_CALLBACKS=1 to allow it (local development)"
            )
