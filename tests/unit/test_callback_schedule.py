import random

import pytest

from gateway.callbacks import environment_configures_requests, next_delay

SCHEDULE = (0, 5, 30, 120)


@pytest.mark.parametrize(("attempts_made", "base"), [(1, 5), (2, 30), (3, 120)])
def test_delays_follow_the_schedule_within_jitter(attempts_made, base):
    rng = random.Random(7)
    delays = [next_delay(SCHEDULE, attempts_made, rng) for _ in range(200)]
    assert all(base * 0.8 <= delay <= base * 1.2 for delay in delays)
    assert len(set(delays)) > 1  # jittered, not constant


def test_no_delay_once_the_schedule_is_spent():
    assert next_delay(SCHEDULE, len(SCHEDULE), random.Random()) is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"PATH": "/usr/bin", "HOME": "/root"}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        ({"NO_PROXY": "internal.example"}, True),
        ({"HTTPS_PROXY": ""}, False),
        ({"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"}, True),
        ({"CURL_CA_BUNDLE": "/etc/ssl/bundle.pem"}, True),
    ],
)
def test_requests_reads_the_environment_only_where_it_configures_something(environ, expected):
    assert environment_configures_requests(environ) is expected
