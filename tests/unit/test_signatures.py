import pytest

from gateway import signatures

# The example from the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_headers(**changes):
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    headers.update(changes)
    return headers


def test_sign_matches_the_specification_example():
    assert signatures.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_verify_accepts_the_specification_example_and_returns_the_id():
    assert signatures.verify([SPEC_SECRET], spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 10) == SPEC_ID


def test_verify_accepts_any_of_several_space_separated_signatures():
    headers = spec_headers(**{"webhook-signature": f"v1,bm90LWl0 {SPEC_SIGNATURE}"})
    assert signatures.verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_verify_accepts_a_signature_by_any_current_secret():
    other = signatures.new_secret()
    assert signatures.verify([other, SPEC_SECRET], spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (spec_headers(), SPEC_BODY + b" ", SPEC_TIMESTAMP),  # body changed
        (spec_headers(**{"webhook-id": "msg_other"}), SPEC_BODY, SPEC_TIMESTAMP),
        (spec_headers(), SPEC_BODY, SPEC_TIMESTAMP + 301),  # too old
        (spec_headers(), SPEC_BODY, SPEC_TIMESTAMP - 301),  # from the future
        (spec_headers(**{"webhook-timestamp": "yesterday"}), SPEC_BODY, SPEC_TIMESTAMP),
        (spec_headers(**{"webhook-signature": "v2," + SPEC_SIGNATURE[3:]}), SPEC_BODY, SPEC_TIMESTAMP),
        ({"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP)}, SPEC_BODY, SPEC_TIMESTAMP),
    ],
)
def test_verify_rejects(headers, body, now):
    with pytest.raises(signatures.SignatureError):
        signatures.verify([SPEC_SECRET], headers, body, now=now)


@pytest.mark.parametrize("age", [-300.0, 300.0, 300.9])
def test_the_five_minute_tolerance_counts_whole_seconds(age):
    """A timestamp 300 whole seconds away is within the tolerance, whatever the fraction of the
    current second (the header counts whole seconds)."""
    assert signatures.verify([SPEC_SECRET], spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + age) == SPEC_ID


def test_new_secrets_have_the_standard_form_and_differ():
    first, second = signatures.new_secret(), signatures.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(signatures._key(first)) == 32
