"""GET /v1/clients/{client_id}/tasks[/{task_id}] with bearer tokens, per CONTRACT §4."""

import base64
import json
import uuid

import pytest
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.config import DEFAULT_NAMESPACE
from gateway.identity import task_uuid
from gateway.intake import accept_task
from tests.conftest import make_settings
from tests.factories import register_client, upsert_task


@pytest.fixture
def app(database_url):
    app = create_app(make_settings(database_url))
    yield app
    app.extensions["taskgate"].engine.dispose()


@pytest.fixture
def engine(app):
    return app.extensions["taskgate"].engine


@pytest.fixture
def token(engine):
    return register_client(engine)["api_token"]


@pytest.fixture
def client(app):
    return app.test_client()


def accept(engine, client_id, task_id):
    with Session(engine) as session, session.begin():
        accept_task(
            session, client_id, task_uuid(DEFAULT_NAMESPACE, client_id, task_id), upsert_task(task_id)
        )


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_task_reads_back_per_the_contract(engine, client, token):
    accept(engine, "acme", "T-1001")
    response = client.get("/v1/clients/acme/tasks/T-1001", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert body["task_id"] == "T-1001"
    assert body["task_uuid"] == "e98a61d6-14d6-5dcc-99de-e4130e825881"
    assert body["type"] == "customer.upsert"
    assert body["customer_id"] == "C-42"
    assert body["status"] == "accepted"
    assert body["received_at"].endswith("+00:00")
    assert body["results"] == [] and body["deliveries"] == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_without_a_valid_token_is_401(engine, client, token, headers):
    accept(engine, "acme", "T-1001")
    response = client.get("/v1/clients/acme/tasks/T-1001", headers=headers)
    assert response.status_code == 401
    assert "T-1001" not in response.get_data(as_text=True)


def test_another_clients_token_never_sees_data(engine, client, token):
    other_token = register_client(engine, "other")["api_token"]
    accept(engine, "acme", "T-1001")
    for url in ("/v1/clients/acme/tasks/T-1001", "/v1/clients/acme/tasks"):
        response = client.get(url, headers=bearer(other_token))
        assert response.status_code in (401, 404)
        assert "T-1001" not in response.get_data(as_text=True)
    # and under its own name, the other client has no such task
    assert client.get("/v1/clients/other/tasks/T-1001", headers=bearer(other_token)).status_code == 404


@pytest.mark.parametrize("query", ["status=bogus", "limit=0", "limit=x"])
def test_another_clients_token_learns_nothing_from_a_bad_query_either(engine, client, token, query):
    """The token is checked before the query: 401/404, never the 422 that tells the query apart."""
    other = register_client(engine, "other")["api_token"]
    for headers in (bearer(other), {}):
        assert client.get(f"/v1/clients/acme/tasks?{query}", headers=headers).status_code in (401, 404)


def test_an_unknown_task_is_404(client, token):
    response = client.get("/v1/clients/acme/tasks/T-404", headers=bearer(token))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_the_list_pages_through_every_task_once(engine, client, token):
    for number in range(5):
        accept(engine, "acme", f"T-{number}")
    seen, url = [], "/v1/clients/acme/tasks?limit=2"
    while url:
        page = client.get(url, headers=bearer(token)).get_json()
        assert len(page["items"]) <= 2
        seen += [item["task_id"] for item in page["items"]]
        url = page["links"].get("next")
    assert sorted(seen) == [f"T-{number}" for number in range(5)]


def test_the_list_filters_by_status(engine, client, token):
    accept(engine, "acme", "T-1")
    assert (
        len(client.get("/v1/clients/acme/tasks?status=accepted", headers=bearer(token)).get_json()["items"])
        == 1
    )
    assert (
        client.get("/v1/clients/acme/tasks?status=succeeded", headers=bearer(token)).get_json()["items"] == []
    )


def test_parameters_left_empty_as_the_contract_writes_them_are_the_defaults(engine, client, token):
    accept(engine, "acme", "T-1")
    page = client.get("/v1/clients/acme/tasks?status=&limit=&cursor=", headers=bearer(token))
    assert page.status_code == 200
    assert [item["task_id"] for item in page.get_json()["items"]] == ["T-1"]


@pytest.mark.parametrize(
    ("query", "field", "status"),
    [("status=done", "status", 422), ("limit=0", "limit", 422), ("cursor=%%%", "cursor", 400)],
)
def test_a_bad_query_names_the_parameter(client, token, query, field, status):
    response = client.get(f"/v1/clients/acme/tasks?{query}", headers=bearer(token))
    assert response.status_code == status
    assert field in response.get_json()["errors"]


def test_a_task_id_outside_the_contract_is_404(client, token):
    assert client.get("/v1/clients/acme/tasks/T%00x", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize("received_at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_cursor_whose_time_is_out_of_utcs_range_is_400(client, token, received_at):
    cursor = base64.urlsafe_b64encode(json.dumps([received_at, str(uuid.uuid4())]).encode()).decode()
    response = client.get(f"/v1/clients/acme/tasks?cursor={cursor}", headers=bearer(token))
    assert response.status_code == 400


def test_a_cursor_with_a_naive_time_is_400(client, token):
    cursor = base64.urlsafe_b64encode(
        json.dumps(["2026-01-01T00:00:00", str(uuid.uuid4())]).encode()
    ).decode()
    response = client.get(f"/v1/clients/acme/tasks?cursor={cursor}", headers=bearer(token))
    assert response.status_code == 400
