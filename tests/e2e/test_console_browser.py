"""The operator console in headless Chromium against a real `taskgate serve`: sign in, find the task
this test sent, read its timeline, retry its failed delivery and see it delivered.

Chromium is Debian's (`apt-get install chromium`, which .ci/run does), driven by Playwright. The
screenshots go to a temporary directory, or to TASKGATE_TEST_SCREENSHOTS_DIR when set (the README's
come from `TASKGATE_TEST_SCREENSHOTS_DIR=docs/console pytest -m browser`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import requests

from gateway import signatures
from tests import backends
from tests.e2e.helpers import BIN, Process, environment, free_port, run, wait_until_healthy
from tests.factories import schedule_task, signed, survey_task, upsert_task, wait_for
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TOKEN = "console-e2e-operator-token"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 60_000  # a busy two-core machine: generous, and only ever waited out on failure


def require_browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[test]')"
    else:
        missing = None if Path(CHROMIUM).exists() else "chromium is not installed (apt-get install chromium)"
    if missing:
        if backends.REQUIRE_SERVICES:
            pytest.fail(missing + " (TASKGATE_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(missing)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("TASKGATE_TEST_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def receiver():
    answers = {"status": 500}
    with Receiver(lambda request, number: answers["status"]) as receiver:
        receiver.answers = answers
        yield receiver


class Taskgate:
    """A `taskgate serve` on the embedded defaults, with the console on and quick callback retries."""

    def __init__(self, tmp_path: Path, receiver: Receiver):
        self.env = environment(
            TASKGATE_DATA_DIR=str(tmp_path / "data"),
            TASKGATE_OPERATOR_TOKEN=TOKEN,
            TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.2",  # two attempts, then failed
            TASKGATE_HEARTBEAT_SECONDS="1",
        )
        self.credentials = json.loads(
            run([str(BIN / "taskgate"), "clients", "add", "acme", "--callback-url", receiver.url], self.env)
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process(
            [str(BIN / "taskgate"), "serve", "--port", str(port)], self.env, tmp_path / "serve.log"
        )
        wait_until_healthy(self.url, self.process)

    def send(self, task: dict) -> dict:
        raw, headers = signed(self.credentials["signing_secret"], task, webhook_id=f"msg_{task['task_id']}")
        response = requests.post(f"{self.url}/v1/clients/acme/tasks", data=raw, headers=headers, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def read(self, task_id: str) -> dict:
        auth = {"Authorization": f"Bearer {self.credentials['api_token']}"}
        return requests.get(f"{self.url}/v1/clients/acme/tasks/{task_id}", headers=auth, timeout=10).json()

    def wait_for_delivery(self, task_id: str, status: str) -> dict:
        def reached():
            task = self.read(task_id)
            return task["deliveries"] and all(d["status"] == status for d in task["deliveries"]) and task

        return wait_for(
            reached, timeout=60, interval=0.1, message=f"the callbacks of {task_id} to be {status}"
        )


def test_retrying_a_failed_delivery_in_the_browser(tmp_path, receiver, screenshots):
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    taskgate = Taskgate(tmp_path, receiver)
    try:
        task_uuid = taskgate.send(upsert_task("T-1001"))["task_uuid"]
        taskgate.wait_for_delivery("T-1001", "failed")
        # Some company for it in the screenshots: a survey, an appointment, one task left waiting.
        taskgate.send(survey_task("S-1"))
        taskgate.send(schedule_task("A-1", "2026-12-01T09:00:00+00:00"))
        taskgate.send(survey_task("S-2", customer_id="C-77"))
        taskgate.wait_for_delivery("S-1", "failed")
        taskgate.wait_for_delivery("A-1", "failed")
        wait_for(lambda: taskgate.read("S-2")["status"] == "waiting", timeout=60, message="S-2 to be parked")
        [result] = taskgate.read("T-1001")["results"]
        result_id = result["result_id"]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            try:
                page.goto(f"{taskgate.url}/console/")
                expect(page).to_have_title("Sign in · taskgate console")
                page.get_by_label("Operator token").fill(TOKEN)
                page.get_by_role("button", name="Sign in").click()

                recent = page.locator("#recent-tasks")
                expect(recent).to_contain_text("T-1001")
                expect(page.locator("#deliveries-card")).to_contain_text("3 failed")
                expect(page.locator("#parked-card")).to_contain_text("1 waiting")
                page.screenshot(path=screenshots / "overview.png", full_page=True)

                recent.get_by_role("link", name="T-1001").click()
                expect(page).to_have_url(f"{taskgate.url}/console/tasks/{task_uuid}")
                timeline = page.locator("#timeline")
                expect(timeline).to_contain_text("received from acme")
                expect(timeline).to_contain_text("customers: customer.registered")
                expect(timeline.locator(".event-attempt")).to_have_count(2)
                expect(timeline).to_contain_text("HTTP 500")
                expect(timeline).to_contain_text("delivery failed: customers result")

                page.get_by_role("link", name="Deliveries").click()
                expect(page.locator(".tabs .active")).to_have_text("failed")
                row = page.locator(f'#deliveries tr[data-result-id="{result_id}"]')
                expect(row).to_contain_text("T-1001")
                expect(page.locator("#deliveries tbody tr")).to_have_count(3)
                page.screenshot(path=screenshots / "failed-deliveries.png", full_page=True)

                receiver.answers["status"] = 204
                row.get_by_role("button", name="Retry").click()
                expect(page.get_by_role("status")).to_contain_text("put back in line")
                # The page refreshes itself while the delivery is pending.
                status = page.locator(f'#task-deliveries tr[data-result-id="{result_id}"] .delivery-status')
                expect(status).to_have_text("delivered")
                expect(page.locator("#timeline")).to_contain_text("retried: customers result")
                expect(page.locator("#timeline")).to_contain_text("HTTP 204")
                page.screenshot(path=screenshots / "timeline.png", full_page=True)
            finally:
                browser.close()

        taskgate.wait_for_delivery("T-1001", "delivered")
        [callback] = [r for r in receiver.requests if r["headers"]["webhook-id"] == result_id][-1:]
        assert signatures.verify(
            [taskgate.credentials["signing_secret"]], callback["headers"], callback["body"], now=time.time()
        )
        assert json.loads(callback["body"])["data"]["task_id"] == "T-1001"
    finally:
        code = taskgate.process.stop()
    assert code == 0, taskgate.process.output()
    assert "retried from the console" in taskgate.process.output()
