import socket
from urllib.parse import urlsplit

import pytest

from gateway.urls import UnsafeURL, check_callback_url, resolve_callback_target


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cb",
        "http://localhost:8080/cb",
        "http://10.1.2.3/cb",
        "http://172.16.0.1/cb",
        "http://192.168.1.1/cb",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata, link-local
        "http://[::1]/cb",
        "http://[fe80::1]/cb",
        "http://[fec0::1]/cb",  # site-local: deprecated, still routed in some networks
        "http://0.0.0.0/cb",
        "http://224.0.0.1/cb",
    ],
)
def test_private_loopback_and_link_local_targets_are_refused(url):
    with pytest.raises(UnsafeURL, match="non-public"):
        check_callback_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1/cb", "http://10.1.2.3/cb"])
def test_they_are_allowed_when_private_callbacks_are(url):
    check_callback_url(url, allow_private=True)


def test_a_public_address_is_accepted():
    check_callback_url("https://93.184.215.14/callbacks", allow_private=False)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", ["http://[::1/cb", "http://host:abc/cb", "http://host:99999/cb"])
def test_a_url_that_does_not_parse_is_refused_with_why(url, allow_private):
    with pytest.raises(UnsafeURL, match="does not parse"):
        check_callback_url(url, allow_private=allow_private)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative", "http:///nohost"])
def test_only_absolute_http_urls(url):
    with pytest.raises(UnsafeURL, match="absolute"):
        check_callback_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::7f00:1]/cb",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/cb",  # NAT64 of 169.254.169.254 (cloud metadata)
        "http://[64:ff9b:1::5db8:d70e]/cb",  # local-use NAT64: leads wherever the local network says
        "http://[2002:a9fe:a9fe::]/cb",  # 6to4 of 169.254.169.254
        "http://[::127.0.0.1]/cb",  # IPv4-compatible
        "http://[::ffff:127.0.0.1]/cb",  # IPv4-mapped
        "http://[::ffff:0:7f00:1]/cb",  # IPv4-translated (SIIT)
        "http://[::ffff:0:a00:1]/cb",  # IPv4-translated 10.0.0.1
        "http://[2001:0:a00:1::5ff:fffe]/cb",  # Teredo, its server 10.0.0.1
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/cb",  # Teredo, its client 192.0.2.45
    ],
)
def test_ipv6_addresses_standing_for_non_public_ipv4_addresses_are_refused(url):
    with pytest.raises(UnsafeURL, match="non-public"):
        check_callback_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://[2606:4700:4700::1111]/cb",
        "https://[2002:5db8:d70e::]/cb",  # 6to4 of 93.184.215.14
        "https://[64:ff9b::5db8:d70e]/cb",  # NAT64 of 93.184.215.14
        "https://[::ffff:93.184.215.14]/cb",
    ],
)
def test_public_ipv6_addresses_are_accepted(url):
    assert resolve_callback_target(url, allow_private=False) == [urlsplit(url).hostname]


def test_every_address_a_host_resolves_to_is_checked(monkeypatch):
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.1", 443, 0, 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **_: infos)
    with pytest.raises(UnsafeURL, match=r"which stands for 10\.0\.0\.1"):
        resolve_callback_target("https://callbacks.example/cb", allow_private=False)


def test_nothing_is_looked_up_when_private_targets_are_allowed(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: pytest.fail("looked up"))
    assert resolve_callback_target("http://callbacks.internal/cb", allow_private=True) == []
