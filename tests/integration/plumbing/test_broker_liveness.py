"""Whether the broker answers, as the webhook asks every few seconds: on RabbitMQ, on one kept
connection, replaced at once when the broker has dropped it."""

from messaging import broker
from tests import backends


def rabbitmq_url() -> str:
    url = backends.require(backends.RABBITMQ_URL, "TASKGATE_TEST_RABBITMQ_URL")
    backends.empty_broker(url)
    return url


def test_the_broker_is_asked_on_one_kept_connection():
    liveness = broker.Liveness(rabbitmq_url())
    try:
        assert liveness.answers()
        [kept] = liveness._kept
        assert liveness.answers() and liveness.answers()
        assert liveness._kept == [kept]
    finally:
        liveness.close()


def test_a_kept_connection_the_broker_dropped_is_replaced_in_the_same_question():
    liveness = broker.Liveness(rabbitmq_url())
    try:
        assert liveness.answers()
        [dropped] = liveness._kept
        dropped.connection.sock.close()  # as if the broker had restarted meanwhile
        assert liveness.answers()
        assert liveness._kept and liveness._kept[0] is not dropped
    finally:
        liveness.close()


def test_a_broker_nobody_listens_for_does_not_answer():
    liveness = broker.Liveness("amqp://guest:guest@127.0.0.1:1//", timeout=0.5)
    assert not liveness.answers()
    assert not liveness.answers()


def test_the_in_process_broker_always_answers():
    assert broker.Liveness("memory://").answers()


def test_the_kept_connection_is_closed_when_its_asker_goes():
    liveness = broker.Liveness(rabbitmq_url())
    assert liveness.answers()
    [kept] = liveness._kept
    del liveness
    assert not kept.connected
