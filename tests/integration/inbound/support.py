"""What the hostile-input and throttling tests share: apps made with test settings, signed posts,
and the problem+json check."""

from __future__ import annotations

import contextlib

from gateway import create_app
from tests.conftest import make_settings
from tests.factories import signed

URL = "/v1/clients/acme/tasks"
TOKEN = "operator-token-for-tests"


@contextlib.contextmanager
def app_maker(database_url):
    """make(**settings): an app on database_url with the operator token; disposed of at the end."""
    apps = []

    def make(**settings):
        app = create_app(make_settings(database_url, operator_token=TOKEN, **settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["taskgate"].engine.dispose()


def assert_problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert "Traceback" not in response.get_data(as_text=True)
    return response.get_json()


def post(http, secret, body, url=URL, source="192.0.2.1", **options):
    raw, headers = signed(secret, body, **options)
    return http.post(url, data=raw, headers=headers, environ_base={"REMOTE_ADDR": source})
