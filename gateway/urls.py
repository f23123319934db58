"""Callback URLs must not point into our own network (SSRF), unless allowed for local development."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes whose last 32 bits are an IPv4 address a packet may end up at: NAT64's well-known
# prefix, IPv4-compatible and IPv4-translated (SIIT) addresses. (Mapped, 6to4 and Teredo addresses
# have their own properties in ipaddress.)
_ENDS_IN_IPV4 = tuple(ipaddress.ip_network(prefix) for prefix in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))
# Local-use NAT64 (RFC 8215): where it leads is up to the local network.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeURL(ValueError):
    """The URL is not an acceptable callback target (message is safe to show)."""


def check_callback_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeURL unless url is absolute http(s) and, unless allowed, every address its host
    resolves to is public (see resolve_callback_target)."""
    resolve_callback_target(url, allow_private=allow_private)


def resolve_callback_target(url: str, *, allow_private: bool) -> list[str]:
    """The addresses url's host resolves to, in the resolver's order, each of them public (not
    private, loopback, link-local, multicast, reserved or unspecified, nor an IPv6 address standing
    for such an IPv4 address); else UnsafeURL. When private targets are allowed nothing is looked
    up: the list is empty."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)  # a bad port raises here
    except ValueError as error:
        raise UnsafeURL(f"callback URL does not parse: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("callback URL must be an absolute http(s) URL")
    if allow_private:
        return []
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError) as error:
        raise UnsafeURL(f"callback host {parts.hostname!r} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not is_public(ip):
            embedded = ", ".join(str(inner) for inner in embedded_ipv4(ip))
            raise UnsafeURL(
                f"callback host {parts.hostname!r} resolves to a non-public address ({ip}"
                + (f", which stands for {embedded}" if embedded else "")
                + "); set TASKGATE_ALLOW_PRIVATE_CALLBACKS=1 to allow it (local development)"
            )
    return addresses


def is_public(ip: IPAddress) -> bool:
    """Whether ip, and the IPv4 address it stands for if any, are globally reachable unicast."""
    if ip.version == 6 and (ip in _LOCAL_NAT64 or ip.is_site_local):
        # Site-local (fec0::/10) is deprecated but still routed inside some networks, and Python
        # 3.11 counts it as global.
        return False
    return ip.is_global and not ip.is_multicast and all(map(is_public, embedded_ipv4(ip)))


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address embeds (Teredo: its server's and its client's).

    Checked explicitly, as what ipaddress says of such addresses differs between Python versions."""
    if ip.version == 4:
        return []
    if any(ip in prefix for prefix in _ENDS_IN_IPV4):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    return []
