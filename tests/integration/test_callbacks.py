"""The callback dispatcher against a stubbed endpoint: retries, 410, Retry-After, what is recorded."""

import random
import socket
import uuid
from datetime import timedelta

import pytest
import requests
import responses
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.callbacks import CallbackDispatcher, retry_after_seconds
from gateway.callbacks.sender import _redact
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from gateway.results import record_result
from gateway.tables import clients, delivery_attempts, results
from messaging import vocabulary
from messaging.db import make_engine, utcnow
from messaging.envelope import Envelope
from messaging.wakeup import Wakeup
from tests.factories import register_client, upsert_task
from tests.integration.delivery_support import delivery
from tests.receiver import Receiver

SECRET_QUERY = "token=s3cr3t"
URL = f"http://client.test/callbacks?{SECRET_QUERY}"


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    register_client(engine, callback_url=URL)
    yield engine
    engine.dispose()


@pytest.fixture
def result_id(engine):
    """A recorded result of task T-1001, due for delivery."""
    identity = task_uuid(DEFAULT_NAMESPACE, "acme", "T-1001")
    cause = Envelope("customer.upsert", "T-1001", identity, "acme", {})
    result = vocabulary.result(cause, context="customers", outcome="customer.registered", status="succeeded")
    with Session(engine) as session, session.begin():
        accept_task(session, "acme", identity, upsert_task())
        record_result(session, result)
    return uuid.UUID(result.payload["result_id"])


@pytest.fixture
def endpoint():
    with responses.RequestsMock() as mock:
        yield mock


def dispatcher(engine, schedule=(0, 60, 60)):
    return CallbackDispatcher(
        engine, Wakeup(), timeout=1, schedule=schedule, allow_private=True, rng=random.Random(1)
    )


def attempts(engine, result_id):
    with Session(engine) as session:
        return session.execute(
            select(delivery_attempts).where(delivery_attempts.c.result_id == result_id)
        ).all()


def test_a_2xx_is_delivered_and_the_attempt_recorded(engine, result_id, endpoint):
    endpoint.post(URL, status=202, body="thanks")
    assert dispatcher(engine).deliver_due() == 1
    row = delivery(engine, result_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 202)
    [attempt] = attempts(engine, result_id)
    assert (attempt.status_code, attempt.response_body) == (202, "thanks")
    assert attempt.duration_ms >= 0


def test_a_failure_is_rescheduled_per_the_schedule_with_jitter(engine, result_id, endpoint):
    endpoint.post(URL, status=500)
    before = utcnow()
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert row.status == "pending"
    assert before + timedelta(seconds=48) <= row.next_attempt_at <= utcnow() + timedelta(seconds=72)
    assert dispatcher(engine).deliver_due() == 0  # not due yet


@pytest.mark.parametrize("status", [400, 404, 410])
def test_any_answer_but_a_2xx_is_retried_410_gone_too(engine, result_id, endpoint, status):
    """CONTRACT §5: anything but a 2xx is retried until the last attempt of the schedule."""
    endpoint.post(URL, status=status)
    before = utcnow()
    assert dispatcher(engine).deliver_due() == 1
    row = delivery(engine, result_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, status)
    assert row.next_attempt_at >= before + timedelta(seconds=48)


def test_retry_after_postpones_beyond_the_schedule(engine, result_id, endpoint):
    endpoint.post(URL, status=429, headers={"Retry-After": "600"})
    before = utcnow()
    dispatcher(engine, schedule=(0, 1, 1)).deliver_due()
    assert delivery(engine, result_id).next_attempt_at >= before + timedelta(seconds=600)


def test_only_4_kib_of_the_response_body_is_kept(engine, result_id, endpoint):
    endpoint.post(URL, status=200, body="x" * 100_000)
    dispatcher(engine).deliver_due()
    assert len(attempts(engine, result_id)[0].response_body) == 4096


def test_a_connection_error_is_recorded_without_the_urls_secrets(engine, result_id, endpoint):
    endpoint.post(
        URL, body=requests.ConnectionError(f"cannot reach http://client.test/callbacks?{SECRET_QUERY}")
    )
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert row.status == "pending" and row.last_status_code is None
    assert "ConnectionError" in row.last_error
    assert "s3cr3t" not in row.last_error
    assert "s3cr3t" not in attempts(engine, result_id)[0].error


def test_a_late_record_does_not_overwrite_a_newer_one(engine, result_id, endpoint):
    endpoint.post(URL, status=200)  # answers the other dispatcher
    endpoint.post(URL, status=500)  # answers our stale attempt
    first = dispatcher(engine)
    [[row]] = first._lease_due(1)
    # Our lease ran out and another dispatcher delivered meanwhile.
    with Session(engine) as session, session.begin():
        session.execute(results.update().values(next_attempt_at=utcnow()))
    dispatcher(engine).deliver_due()
    first._attempt(row)  # a stale attempt #1 that failed
    assert delivery(engine, result_id).status == "delivered"
    assert delivery(engine, result_id).attempts == 1
    assert len(attempts(engine, result_id)) == 2  # both attempts are in the log


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120), ("0", 0), ("999999999", 86400), ("soon", None), (None, None)],
)
def test_retry_after_in_seconds(header, expected):
    assert retry_after_seconds(header, utcnow()) == expected


def test_retry_after_as_an_http_date():
    now = utcnow().replace(microsecond=0)
    header = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(header, now) == pytest.approx(90, abs=1)


def test_a_timeout_is_an_error_to_retry(engine, result_id, endpoint):
    endpoint.post(URL, body=requests.ReadTimeout("read timed out"))
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert (row.status, row.last_status_code) == ("pending", None)
    assert row.last_error.startswith("ReadTimeout")


def test_a_redirect_is_not_followed_and_counts_as_a_failure(engine, result_id, endpoint):
    endpoint.post(URL, status=302, headers={"Location": "http://elsewhere.test/"})
    dispatcher(engine).deliver_due()  # responses would raise for an unregistered elsewhere.test
    row = delivery(engine, result_id)
    assert (row.status, row.last_status_code) == ("pending", 302)
    assert len(endpoint.calls) == 1


def test_a_strange_retry_after_does_not_stop_the_attempt_being_recorded(engine, result_id, endpoint):
    endpoint.post(URL, status=503, headers={"Retry-After": "²"})
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)


@pytest.mark.parametrize(
    "date", ["01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 01 Jan 2020 00:00:00 +99999999999999999999999"]
)
def test_a_retry_after_date_out_of_range_does_not_stop_the_attempt_being_recorded(
    engine, result_id, endpoint, date
):
    endpoint.post(URL, status=503, headers={"Retry-After": date})
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
    assert len(attempts(engine, result_id)) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("secret", ["s3cr3t|x", "s3cr3t x", "s3cr\u00e9t", "s%33cr3t"])
def test_a_query_secret_is_redacted_however_the_error_quotes_it(engine, result_id, secret):
    """A real connection error names the URL as the libraries quoted it anew."""
    with engine.begin() as connection:
        connection.execute(
            update(clients).values(callback_url=f"http://127.0.0.1:{closed_port()}/callbacks?token={secret}")
        )
    dispatcher(engine).deliver_due()
    row = delivery(engine, result_id)
    assert "ConnectionError" in row.last_error
    assert "s3cr" not in row.last_error, row.last_error
    assert "s3cr" not in attempts(engine, result_id)[0].error


def test_a_query_requests_leaves_partly_unquoted_is_redacted_whole():
    """requests leaves ')' and quotes unquoted in a URL, and urllib3 names the URL in its errors."""
    url = "https://example.com/cb?sig=s3cr3t)tail"
    text = "Max retries exceeded with url: /cb?sig=s3cr3t)tail (Caused by NewConnectionError('x'))"
    assert "s3cr3t" not in _redact(text, url) and "tail" not in _redact(text, url)


def test_a_response_body_with_nul_bytes_is_recorded(engine, result_id, endpoint):
    endpoint.post(URL, status=500, body=b"binary\x00page")
    dispatcher(engine).deliver_due()
    [attempt] = attempts(engine, result_id)
    assert attempt.status_code == 500 and attempt.response_body.startswith("binary")
    assert delivery(engine, result_id).attempts == 1


@pytest.fixture(params=["direct", "proxy"])
def route(request, monkeypatch):
    """Callbacks straight to the endpoint, or (proxies in the environment) through requests' whole
    session machinery; the endpoint is stubbed either way."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "proxy":
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    return request.param


def test_an_endpoints_cookies_are_neither_kept_nor_sent_back(engine, result_id, endpoint, route):
    """A callback is a signed message, not a browsing session."""
    endpoint.post(URL, status=500, headers={"Set-Cookie": "session=abc; Path=/"})
    endpoint.post(URL, status=204)
    dispatcher(engine, schedule=(0, 0)).deliver_due()
    assert len(endpoint.calls) == 2
    assert "Cookie" not in endpoint.calls[1].request.headers
    assert delivery(engine, result_id).status == "delivered"


def test_a_callback_carries_the_usual_http_headers_and_the_signature(engine, result_id, endpoint):
    endpoint.post(URL, status=204)
    dispatcher(engine).deliver_due()
    headers = endpoint.calls[0].request.headers
    assert headers["User-Agent"] == "taskgate" and headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "*/*" and headers["Connection"] == "keep-alive"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)


def test_a_proxy_named_in_the_environment_carries_the_callbacks(engine, result_id, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with Receiver() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/callbacks"))
        dispatcher(engine).deliver_due()
    [request] = proxy.requests
    assert request["path"] == URL  # the absolute URL: a request for the proxy to forward
    assert delivery(engine, result_id).status == "delivered"


def test_no_netrc_credentials_go_to_a_callback_url(engine, result_id, endpoint, route, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine client.test login operator password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    endpoint.post(URL, status=204)
    dispatcher(engine).deliver_due()
    assert "Authorization" not in endpoint.calls[0].request.headers


def test_a_callback_url_stored_with_leading_blanks_is_delivered_to(database_url, endpoint):
    engine = make_engine(database_url)
    try:
        register_client(engine, "blanks", callback_url=f"  {URL}")  # accepted as such at registration
        identity = task_uuid(DEFAULT_NAMESPACE, "blanks", "T-1")
        cause = Envelope("customer.upsert", "T-1", identity, "blanks", {})
        with Session(engine) as session, session.begin():
            accept_task(session, "blanks", identity, upsert_task("T-1"))
            result = vocabulary.result(cause, context="customers", outcome="x", status="succeeded")
            record_result(session, result)
        endpoint.post(URL, status=204)
        assert dispatcher(engine).deliver_due() == 1
        assert len(endpoint.calls) == 1
    finally:
        engine.dispose()
