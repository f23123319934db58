"""Which pool (so which address, and which name for TLS) a callback request goes to."""

import pytest
import requests

from gateway import callback_http


def prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("POST", url, data=b"{}").prepare()


@pytest.fixture
def adapter():
    adapter = callback_http.CallbackAdapter()
    yield adapter
    adapter.close()


def test_a_pinned_https_request_goes_to_the_address_with_the_host_name_for_tls(adapter):
    request = prepared("https://callbacks.example:8443/cb?token=x")
    with callback_http.pinned("93.184.215.14"):
        host, pool = adapter.build_connection_pool_key_attributes(request, verify=True)
        connections = adapter.get_connection_with_tls_context(request, verify=True)
        adapter.add_headers(request)
    assert host == {"scheme": "https", "host": "93.184.215.14", "port": 8443}
    assert pool["server_hostname"] == "callbacks.example"
    assert (connections.host, connections.port) == ("93.184.215.14", 8443)
    assert connections.conn_kw["server_hostname"] == "callbacks.example"
    assert request.headers["Host"] == "callbacks.example:8443"


def test_a_pinned_http_request_goes_to_the_address_with_the_host_name_in_the_header(adapter):
    request = prepared("http://callbacks.example/cb")
    with callback_http.pinned("2606:4700:4700::1111"):
        connections = adapter.get_connection_with_tls_context(request, verify=True)
        adapter.add_headers(request)
    assert connections.host == "2606:4700:4700::1111"
    assert request.headers["Host"] == "callbacks.example"


def test_pools_for_two_hosts_at_one_address_are_apart(adapter):
    with callback_http.pinned("93.184.215.14"):
        first = adapter.get_connection_with_tls_context(prepared("http://one.example/cb"), verify=True)
        second = adapter.get_connection_with_tls_context(prepared("http://two.example/cb"), verify=True)
    assert first is not second


def test_an_unpinned_request_goes_to_the_host_by_its_name(adapter):
    request = prepared("https://callbacks.example/cb")
    connections = adapter.get_connection_with_tls_context(request, verify=True)
    adapter.add_headers(request)
    assert connections.host == "callbacks.example"
    assert "server_hostname" not in connections.conn_kw
    assert "Host" not in request.headers
