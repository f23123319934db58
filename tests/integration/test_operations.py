"""Health, readiness, metrics and the OpenAPI document."""

import pytest
from openapi_spec_validator import validate

from gateway import create_app
from tests.conftest import make_settings
from tests.factories import register_client, signed, upsert_task


@pytest.fixture
def app(database_url):
    app = create_app(make_settings(database_url))
    yield app
    app.extensions["taskgate"].engine.dispose()


def test_healthz(app):
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}


def test_readyz_when_everything_answers(app):
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(tmp_path):
    settings = make_settings(
        f"sqlite:///{tmp_path}/missing/taskgate.db", broker_url="amqp://guest:guest@127.0.0.1:1//"
    )
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "down", "broker": "down"}


@pytest.mark.parametrize("damage", ["empty", "not a database"])
def test_readyz_is_down_on_a_file_without_taskgates_tables(tmp_path, damage):
    """An empty file SQLite made where no migration ran (a data directory other than the
    workers'), or a file that is not a database: every webhook call would fail, so not ready."""
    path = tmp_path / "taskgate.db"
    if damage == "not a database":
        path.write_bytes(b"not a database " * 512)
    app = create_app(make_settings(f"sqlite:///{path}"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "down"
    app.extensions["taskgate"].engine.dispose()


def test_metrics_count_webhook_requests_by_client_type_and_code(app):
    secret = register_client(app.extensions["taskgate"].engine)["signing_secret"]
    client = app.test_client()

    def received(code):
        text = client.get("/metrics").get_data(as_text=True)
        line = f'taskgate_tasks_received_total{{client_id="acme",code="{code}",type="customer.upsert"}}'
        return float(next((row.split()[-1] for row in text.splitlines() if row.startswith(line)), 0))

    before = received(202)
    raw, headers = signed(secret, upsert_task())
    assert client.post("/v1/clients/acme/tasks", data=raw, headers=headers).status_code == 202
    assert received(202) == before + 1


def test_openapi_is_a_valid_document_covering_the_api(app):
    document = app.test_client().get("/openapi.json").get_json()
    validate(document)
    assert {
        "/v1/clients/{client_id}/tasks",
        "/v1/clients/{client_id}/tasks/{task_id}",
        "/healthz",
        "/readyz",
    } <= set(document["paths"])
    schemas = document["components"]["schemas"]
    for payload in (
        "CustomerUpsertPayload",
        "SurveyAssignPayload",
        "AppointmentSchedulePayload",
        "AppointmentCancelPayload",
        "MaintenanceSchedulePayload",
    ):
        assert payload in schemas
    post = document["paths"]["/v1/clients/{client_id}/tasks"]["post"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {p["name"] for p in post["parameters"]}
    assert {"202", "200", "400", "401", "409", "413", "415", "422", "503"} <= set(post["responses"])


def test_docs_page_shows_the_openapi_document_in_swagger_ui(app):
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'src="/docs/static/swagger-ui-bundle.js"' in html and 'src="/docs/init.js"' in html
    assert '"/openapi.json"' in client.get("/docs/init.js").get_data(as_text=True)
    with client.get("/docs/static/swagger-ui-bundle.js") as bundle:
        assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.get_data()
    assert client.get("/docs/static/index.html").status_code == 404
    assert client.get("/docs/static/..%2fsetup.cfg").status_code == 404
