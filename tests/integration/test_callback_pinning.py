"""A callback attempt looks its host up once and connects to an address it checked: a host that
answers a public address to the check and 127.0.0.1 to the connection (DNS rebinding) does not
get the callback into the internal network. HTTPS still checks the certificate for the host name.

No packet leaves the machine: connections to anything but 127.0.0.0/8 are refused (and recorded)."""

from __future__ import annotations

import http.server
import ipaddress
import random
import shutil
import socket
import ssl
import subprocess
import threading

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import callback_http
from gateway.callbacks import CallbackDispatcher
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import delivery_attempts, results
from messaging import vocabulary
from messaging.db import make_engine
from messaging.envelope import Envelope
from messaging.wakeup import Wakeup
from tests.factories import register_client, upsert_task
from tests.receiver import Receiver

PUBLIC = "93.184.215.14"
HOST = "rebind.test"


class Network:
    """Answers lookups of HOST with the given addresses in turn (the last one from then on), passes
    other lookups on, and lets connections go to 127.0.0.0/8 only."""

    def __init__(self, monkeypatch, answers: list[str]):
        self.answers = answers
        self.lookups: list[str] = []
        self.connections: list[tuple[str, int]] = []
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

        def getaddrinfo(host, port, *args, **kwargs):
            if host != HOST:
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups.append(host)
            address = self.answers[min(len(self.lookups), len(self.answers)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.connections.append(address[:2])
                if not ipaddress.ip_address(address[0]).is_loopback:
                    raise ConnectionRefusedError(f"no traffic to {address[0]} from the tests")
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def a_result_for(engine, url: str) -> None:
    register_client(engine, callback_url=url)  # registered as allowed; checked again at delivery
    identity = task_uuid(DEFAULT_NAMESPACE, "acme", "T-1")
    cause = Envelope("customer.upsert", "T-1", identity, "acme", {})
    result = vocabulary.result(cause, context="customers", outcome="x", status="succeeded")
    with Session(engine) as session, session.begin():
        accept_task(session, "acme", identity, upsert_task("T-1"))
        record_result(session, result)


def attempt_errors(engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(delivery_attempts.c.error).order_by(delivery_attempts.c.id)))


def dispatcher(engine, schedule) -> CallbackDispatcher:
    return CallbackDispatcher(engine, Wakeup(), timeout=2, schedule=schedule, rng=random.Random(1))


@pytest.fixture(params=["no proxy", "a proxy for https only"])
def proxies(request, monkeypatch):
    """No proxy, or (proxies in the environment) one that http callbacks do not go through."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    if request.param != "no proxy":
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")


def test_a_host_answering_loopback_after_the_check_gets_no_callback(engine, monkeypatch, proxies):
    with Receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        a_result_for(engine, f"http://{HOST}:{port}/callbacks")
        network = Network(monkeypatch, [PUBLIC, "127.0.0.1"])
        attempted = dispatcher(engine, schedule=(0, 0)).deliver_due()
    assert receiver.requests == []
    assert attempted == 2
    assert network.lookups == [HOST, HOST]  # once per attempt
    assert network.connections == [(PUBLIC, port)]  # the first attempt: to the address it checked
    first, second = attempt_errors(engine)
    assert first.startswith("ConnectionError") and "no traffic to 93.184.215.14" in first
    assert "non-public address (127.0.0.1)" in second  # the second attempt: refused, not connected


def test_a_host_answering_loopback_first_is_refused_without_connecting(engine, monkeypatch):
    a_result_for(engine, f"http://{HOST}:8080/callbacks")
    network = Network(monkeypatch, ["127.0.0.1", PUBLIC])
    dispatcher(engine, schedule=(0,)).deliver_due()
    assert network.lookups == [HOST]
    assert network.connections == []
    [error] = attempt_errors(engine)
    assert "non-public address (127.0.0.1)" in error
    with Session(engine) as session:
        assert session.scalar(select(results.c.delivery_status)) == "failed"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate (and its key) for callback.test only."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=callback.test", "-addext", "subjectAltName=DNS:callback.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_receiver(certificate):
    """An HTTPS endpoint on 127.0.0.1 answering 204; records the name each client sent (SNI) and
    the Host header of each request."""
    seen = {"sni": [], "host": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["host"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda sock, name, _: seen["sni"].append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, seen
    server.shutdown()
    server.server_close()


def test_https_pinned_to_an_address_checks_the_certificate_for_the_host_name(tls_receiver, certificate):
    port, seen = tls_receiver
    with requests.Session() as session:
        session.mount("https://", callback_http.CallbackAdapter())
        with callback_http.pinned("127.0.0.1"):  # callback.test resolves nowhere: only the pin leads there
            response = session.post(f"https://callback.test:{port}/cb", data=b"{}", verify=certificate[0])
            response.close()
            with pytest.raises(requests.exceptions.SSLError, match=r"(?i)hostname mismatch"):
                session.post(f"https://other.test:{port}/cb", data=b"{}", verify=certificate[0])
    assert response.status_code == 204
    assert seen["sni"][0] == "callback.test"
    assert seen["host"] == [f"callback.test:{port}"]
