"""The operator console through Flask's test client: who gets in, what the pages show, and retrying a
failed delivery (the in-process runtime delivers it; callbacks are stubbed)."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
import responses

from gateway import create_app
from gateway.console import COOKIE
from tests.conftest import make_settings
from tests.factories import register_client, survey_task, upsert_task, wait_for
from tests.integration.conftest import CALLBACK_URL

TOKEN = "operator-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def sign_in(http, token=TOKEN, **headers):
    return http.post("/console/login", data={"token": token, "next": "/console/"}, headers=headers)


def csrf_token(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([0-9a-f]+)"', page).group(1).decode()


@pytest.fixture
def app(database_url):
    app = create_app(make_settings(database_url, operator_token=TOKEN))
    register_client(app.extensions["taskgate"].engine)
    yield app
    app.extensions["taskgate"].engine.dispose()


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture
def signed_in(http):
    assert sign_in(http).status_code == 303
    return http


# --- access ---------------------------------------------------------------------------------------


def test_without_an_operator_token_there_is_no_console(database_url):
    app = create_app(make_settings(database_url))
    http = app.test_client()
    for path in (
        "/console/",
        "/console/login",
        "/console/static/console.css",
        f"/console/tasks/{uuid.uuid4()}",
    ):
        with http.get(path, headers=BEARER) as response:
            assert response.status_code == 404, path
            assert response.mimetype == "application/problem+json"  # like any unknown URL
    assert http.post("/console/login", data={"token": TOKEN}).status_code == 404
    app.extensions["taskgate"].engine.dispose()


def test_a_visitor_is_sent_to_the_sign_in_page(http):
    response = http.get("/console/deliveries?status=failed")
    assert response.status_code == 302
    assert response.location == "/console/login?next=/console/deliveries?status%3Dfailed"
    page = http.get(response.location)
    assert page.status_code == 200
    assert b'name="token"' in page.data


def test_the_wrong_token_is_refused(http):
    for wrong in ("nope", TOKEN + "x", "", "тoken-with-ünicode"):
        response = sign_in(http, wrong)
        assert response.status_code == 401, wrong
        assert b"not the operator token" in response.data
        assert "Set-Cookie" not in response.headers
    assert http.get("/console/").status_code == 302


def test_signing_in_sets_a_strict_http_only_cookie_without_the_token(http):
    response = sign_in(http)
    assert response.status_code == 303
    assert response.location == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here
    assert TOKEN not in cookie
    page = http.get("/console/")
    assert page.status_code == 200
    assert b"Recent tasks" in page.data


def test_the_cookie_is_secure_over_https(http):
    response = http.post("/console/login", data={"token": TOKEN}, base_url="https://localhost")
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_forged_or_expired_cookie_is_not_a_session(http):
    for value in ("", "1.abc", "99999999999.deadbeef", "1000.0000", "²³.x", "no-dot"):
        http.set_cookie(COOKIE, value, path="/console")
        assert http.get("/console/").status_code == 302, value


def test_scripts_use_the_bearer_token(http):
    assert http.get("/console/", headers=BEARER).status_code == 200
    assert http.get("/console/parked", headers=BEARER).status_code == 200
    for header in ("Bearer wrong", "bearer wrong", "Bearer", "Bearer ünïcode"):
        response = http.get("/console/", headers={"Authorization": header})
        assert response.status_code == 401, header
    for header in ("Basic " + TOKEN, TOKEN):  # not a bearer: not for the console, which wants its cookie
        response = http.get("/console/", headers={"Authorization": header})
        assert response.status_code == 302 and "/console/login" in response.location, header


def test_behind_a_proxys_basic_authentication_the_session_works(signed_in):
    """A proxy's access control in front of the console (docs/security.md) sends its own
    Authorization header with every request: the console's cookie still counts, and nothing is
    counted as a failed sign-in."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    for _ in range(130):  # more than the failed sign-ins a source may make in a minute
        assert signed_in.get("/console/", headers=basic).status_code == 200


def test_failed_api_tokens_from_an_address_do_not_lock_its_operator_out(http):
    wrong = {"Authorization": "Bearer wrong"}
    for _ in range(130):  # past the failed authentications a source may make in a minute
        http.get("/v1/clients/acme/tasks", headers=wrong)
    assert http.get("/v1/clients/acme/tasks", headers=wrong).status_code == 429
    assert http.get("/console/", headers=BEARER).status_code == 200
    assert sign_in(http).status_code == 303


def test_posts_need_the_csrf_token_and_this_origin(signed_in):
    page = signed_in.get("/console/deliveries")
    token = csrf_token(page.data)
    retry = f"/console/deliveries/{uuid.uuid4()}/retry"

    assert signed_in.post(retry).status_code == 403
    assert signed_in.post(retry, data={"csrf_token": "0" * 64}).status_code == 403
    for header in (
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/x"},
        {"Origin": "null"},
    ):
        assert signed_in.post(retry, data={"csrf_token": token}, headers=header).status_code == 403
    # The right token from this host gets through to the handler: no such delivery.
    same_host = {"Origin": "http://localhost"}
    assert signed_in.post(retry, data={"csrf_token": token}, headers=same_host).status_code == 404

    assert signed_in.post("/console/logout", headers=same_host).status_code == 403
    assert signed_in.get("/console/").status_code == 200
    logout = signed_in.post("/console/logout", data={"csrf_token": token}, headers=same_host)
    assert logout.status_code == 303
    assert signed_in.get("/console/").status_code == 302


def test_signing_in_from_another_site_is_refused(http):
    assert sign_in(http, Origin="https://evil.example").status_code == 403


def test_sign_in_only_sends_you_back_into_the_console(http):
    for target in ("https://evil.example/", "//evil.example/console/", "/metrics", "/console\\..\\x"):
        response = http.post("/console/login", data={"token": TOKEN, "next": target})
        assert response.location == "/console/", target
        http.delete_cookie(COOKIE, path="/console")
    response = http.post("/console/login", data={"token": TOKEN, "next": "/console/parked"})
    assert response.location == "/console/parked"


def test_bad_input_gets_a_page_never_a_500(signed_in):
    for path in (
        "/console/tasks/not-a-uuid",
        f"/console/tasks/{uuid.uuid4()}",
        "/console/tasks/%00",
        "/console/nothing-here",
    ):
        response = signed_in.get(path)
        assert response.status_code == 404, path
    assert b"Not found" in signed_in.get("/console/tasks/not-a-uuid").data
    for query in ("?limit=abc&status=bogus", "?limit=-5", "?limit=99999", "?q=%00x&client=%00", "?q=100%25_"):
        assert signed_in.get("/console/" + query).status_code == 200, query
    assert signed_in.get("/console/deliveries?status=bogus").status_code == 200
    assert signed_in.post("/console/deliveries/not-a-uuid/retry", headers=BEARER).status_code == 404


def test_an_unreachable_database_is_a_503_page():
    app = create_app(make_settings("postgresql+psycopg://taskgate@127.0.0.1:9/nowhere", operator_token=TOKEN))
    response = app.test_client().get("/console/", headers=BEARER)
    assert response.status_code == 503
    assert b"Database unavailable" in response.data
    app.extensions["taskgate"].engine.dispose()


def test_pages_carry_protective_headers(signed_in):
    headers = signed_in.get("/console/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    with signed_in.get("/console/static/console.css") as stylesheet:
        assert stylesheet.status_code == 200


# --- with tasks flowing -----------------------------------------------------------------------------


@pytest.fixture
def console(gateway):
    """The in-process gateway of tests/integration/conftest.py, with the console switched on."""
    state = gateway.extensions["taskgate"]
    state.settings = dataclasses.replace(state.settings, operator_token=TOKEN)
    return gateway.test_client()


def delivery_status(client, task_id):
    deliveries = client.read(task_id)["deliveries"]
    return deliveries[0]["status"] if deliveries else None


def test_a_failed_delivery_is_shown_and_retried_from_the_console(console, client, callbacks):
    callbacks.add(responses.POST, CALLBACK_URL, status=500)
    client.submit(upsert_task("T-1001"))
    wait_for(lambda: delivery_status(client, "T-1001") == "failed", message="the delivery to fail")
    task_uuid = client.read("T-1001")["task_uuid"]

    overview = console.get("/console/", headers=BEARER).get_data(as_text=True)
    assert "T-1001" in overview
    assert f"/console/tasks/{task_uuid}" in overview
    assert re.search(r'id="deliveries-card".*?<span class="number">1</span> failed', overview, re.S)

    timeline = console.get(f"/console/tasks/{task_uuid}", headers=BEARER).get_data(as_text=True)
    titles = re.findall(r'<div class="title">([^<]+)', timeline)
    assert [title.strip() for title in titles] == [
        "received from acme",
        "routed",
        "customers: customer.registered",
        "callback attempt 1: customers result",
        "callback attempt 2: customers result",
        "callback attempt 3: customers result",
        "delivery failed: customers result",
    ]
    assert timeline.count("HTTP 500 in") == 3

    failed = console.get("/console/deliveries?status=failed", headers=BEARER).get_data(as_text=True)
    [result_id] = re.findall(r'<tr data-result-id="([0-9a-f-]+)"', failed)
    assert result_id == client.read("T-1001")["results"][0]["result_id"]

    callbacks.replace(responses.POST, CALLBACK_URL, status=204)
    retried = console.post(f"/console/deliveries/{result_id}/retry", headers=BEARER)
    assert retried.status_code == 303
    assert retried.location == f"/console/tasks/{task_uuid}?notice=retried"
    wait_for(lambda: delivery_status(client, "T-1001") == "delivered", message="the retried delivery")

    timeline = console.get(retried.location, headers=BEARER).get_data(as_text=True)
    assert "the delivery was put back in line" in timeline
    assert "HTTP 204 in" in timeline
    titles = [title.strip() for title in re.findall(r'<div class="title">([^<]+)', timeline)]
    assert titles[-3:] == [
        "retried: customers result",
        "callback attempt 4: customers result",
        "delivered: customers result",
    ]
    assert "delivery failed" not in timeline
    # The retry went out with the result's id as webhook-id, like the attempts before it.
    assert {call.request.headers["webhook-id"] for call in callbacks.calls} == {result_id}

    again = console.post(f"/console/deliveries/{result_id}/retry", headers=BEARER)
    assert again.status_code == 303  # a delivered one may be sent again; only a pending one may not


def test_parked_tasks_and_filters(console, client, callbacks):
    callbacks.add(responses.POST, CALLBACK_URL, status=204)
    client.submit(upsert_task("T-1", customer_id="C-1"))
    client.submit(survey_task("S-9", customer_id="C-unknown"))
    client.wait_for_status("T-1", "succeeded")
    client.wait_for_status("S-9", "waiting")

    parked = console.get("/console/parked", headers=BEARER).get_data(as_text=True)
    assert "S-9" in parked and "C-unknown" in parked and "T-1" not in parked
    assert "<code>unknown_customer</code></td>" in parked
    overview = console.get("/console/", headers=BEARER).get_data(as_text=True)
    assert re.search(r'id="parked-card".*?<span class="number">1</span> waiting', overview, re.S)

    def listed(query):
        page = console.get("/console/" + query, headers=BEARER).get_data(as_text=True)
        return re.findall(r'<a class="mono" href="/console/tasks/[^"]+">([^<]+)</a>', page)

    assert sorted(listed("")) == ["S-9", "T-1"]
    assert listed("?status=waiting") == ["S-9"]
    assert listed("?q=T-") == ["T-1"]
    assert listed(f"?q={client.read('S-9')['task_uuid']}") == ["S-9"]
    assert listed("?client=other") == []

    waiting = console.get(f"/console/tasks/{client.read('S-9')['task_uuid']}", headers=BEARER)
    assert "parked by survey: unknown_customer" in waiting.get_data(as_text=True)
