import random

import pytest
import requests

from gateway.callbacks import next_delay, read_environment_once

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
    ("environ", "trust_env", "verify"),
    [
        ({}, False, True),
        ({"PATH": "/usr/bin", "HOME": "/root"}, False, True),
        (
            {"REQUESTS_CA_BUNDLE": "/etc/ssl/a.pem", "CURL_CA_BUNDLE": "/etc/ssl/b.pem"},
            False,
            "/etc/ssl/a.pem",
        ),
        ({"CURL_CA_BUNDLE": "/etc/ssl/b.pem"}, False, "/etc/ssl/b.pem"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True, True),  # requests applies no_proxy per URL
        ({"http_proxy": "http://proxy:3128", "REQUESTS_CA_BUNDLE": "/etc/ssl/a.pem"}, True, True),
        ({"NO_PROXY": "internal.example"}, False, True),  # no proxy to apply it to
        ({"HTTPS_PROXY": ""}, False, True),
    ],
)
def test_the_environment_is_read_once_unless_proxies_need_requests_to_read_it(environ, trust_env, verify):
    session = requests.Session()
    read_environment_once(session, environ)
    assert (session.trust_env, session.verify) == (trust_env, verify)
