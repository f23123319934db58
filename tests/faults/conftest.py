"""The fault scenarios' deployment: taskgate's processes on PostgreSQL (behind a proxy that can cut
it) and RabbitMQ, with a callback receiver."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from messaging.db import make_engine
from tests import backends
from tests.e2e.helpers import environment
from tests.factories import register_client
from tests.faults.system import Client, System
from tests.receiver import Receiver
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def deployment(tmp_path, postgres_database):
    broker_url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    postgres_database.empty()
    backends.empty_broker(broker_url)
    url = make_url(postgres_database.url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy, Receiver() as receiver:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = environment(
            TASKGATE_DATABASE_URL=proxied,
            TASKGATE_BROKER_URL=broker_url,
            TASKGATE_CALLBACK_TIMEOUT_SECONDS="2",
            TASKGATE_CALLBACK_RETRY_SCHEDULE="0,0.5,1,1,2,2,3,5,5,10,10,20,30",
            TASKGATE_LOG_LEVEL="WARNING",
        )
        engine = make_engine(postgres_database.url)
        credentials = register_client(engine, callback_url=receiver.url)
        system = System(env, tmp_path)
        try:
            yield system, engine, receiver, proxy, Client(system.base_url, credentials)
            system.wait_until_started(engine)
        finally:
            codes = system.stop()
            engine.dispose()
        assert all(code in (0, -9) for code in codes), system.logs()
