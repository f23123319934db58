"""The inbound tests' fixtures: apps made with test settings (and the operator token), and a
registered client."""

import pytest

from tests.factories import register_client
from tests.integration.inbound.support import app_maker


@pytest.fixture
def make_app(database_url):
    with app_maker(database_url) as make:
        yield make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def credentials(app):
    return register_client(app.extensions["taskgate"].engine)
