"""The plumbing tests' fixtures: a SQLite engine for the customers context's tables, and a broker
connection with taskgate's topology declared."""

import pytest

from tests.integration.plumbing.support import declared, sqlite_engine


@pytest.fixture
def engine(tmp_path):
    with sqlite_engine(tmp_path) as engine:
        yield engine


@pytest.fixture
def connection(broker_url):
    with declared(broker_url) as connection:
        yield connection
