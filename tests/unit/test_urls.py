import pytest

from gateway.urls import UnsafeURL, check_callback_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cb",
        "http://localhost:8080/cb",
        "http://10.1.2.3/cb",
        "http://172.16.0.1/cb",
        "http://192.168.1.1/cb",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata, link-local
        "http://[::1]/cb",
        "http://[fe80::1]/cb",
        "http://0.0.0.0/cb",
        "http://224.0.0.1/cb",
    ],
)
def test_private_loopback_and_link_local_targets_are_refused(url):
    with pytest.raises(UnsafeURL, match="non-public"):
        check_callback_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1/cb", "http://10.1.2.3/cb"])
def test_they_are_allowed_when_private_callbacks_are(url):
    check_callback_url(url, allow_private=True)


def test_a_public_address_is_accepted():
    check_callback_url("https://93.184.215.14/callbacks", allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative", "http:///nohost"])
def test_only_absolute_http_urls(url):
    with pytest.raises(UnsafeURL, match="absolute"):
        check_callback_url(url, allow_private=True)
