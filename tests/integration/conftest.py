"""A running taskgate in this process: every context's loops as threads, the app, stubbed callbacks."""

from __future__ import annotations

import itertools

import pytest
import responses

from gateway import create_app
from gateway.tables import outbox as gateway_outbox
from messaging.db import make_engine
from taskgate.registry import NAMES, overview_sources
from taskgate.runtime import Runtime
from tests.conftest import make_settings
from tests.factories import register_client, signed, wait_for

CALLBACK_URL = "http://client.test/callbacks"


@pytest.fixture
def callbacks():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def context_environ():
    """TASKGATE_* settings of the contexts (a module may override this fixture)."""
    return {}


@pytest.fixture
def gateway(stack, callbacks, context_environ):
    database_url, broker_url = stack
    settings = make_settings(database_url, broker_url, callback_retry_schedule=(0, 0.05, 0.05))
    engine = make_engine(database_url)
    runtime = Runtime(settings, engine, environ=context_environ)
    runtime.start(NAMES)
    app = create_app(
        settings,
        engine=engine,
        publish=runtime.relay(gateway_outbox).offer,
        overview_sources=overview_sources(),
    )
    yield app
    runtime.stop()
    engine.dispose()


@pytest.fixture
def credentials(gateway):
    return register_client(gateway.extensions["taskgate"].engine, callback_url=CALLBACK_URL)


class TaskClient:
    """Plays the client against the app: signed submissions, authorized reads, waiting."""

    def __init__(self, app, credentials):
        self.http = app.test_client()
        self.credentials = credentials
        self._ids = itertools.count()

    def submit(self, task: dict):
        raw, headers = signed(self.credentials["signing_secret"], task, webhook_id=f"msg_{next(self._ids)}")
        response = self.http.post("/v1/clients/acme/tasks", data=raw, headers=headers)
        assert response.status_code in (200, 202), response.get_json()
        return response

    def read(self, task_id: str) -> dict:
        headers = {"Authorization": f"Bearer {self.credentials['api_token']}"}
        return self.http.get(f"/v1/clients/acme/tasks/{task_id}", headers=headers).get_json()

    def wait_for_status(self, task_id: str, status: str, timeout: float = 20) -> dict:
        return wait_for(
            lambda: (task := self.read(task_id))["status"] == status and task,
            timeout=timeout,
            message=f"{task_id} to be {status}",
        )

    def wait_for_results(self, task_id: str, count: int, timeout: float = 20) -> dict:
        return wait_for(
            lambda: len((task := self.read(task_id))["results"]) >= count and task,
            timeout=timeout,
            message=f"{count} results of {task_id}",
        )

    def outcome(self, task_id: str, context: str | None = None) -> tuple[str, dict]:
        """(outcome, result) of the task's result from context (its only result if None)."""
        results = [r for r in self.read(task_id)["results"] if context in (None, r["context"])]
        assert len(results) == 1, results
        return results[0]["outcome"], results[0]["result"]


@pytest.fixture
def client(gateway, credentials):
    return TaskClient(gateway, credentials)
