"""The test node is a real Elasticsearch, and its fault knobs fail for real."""

from __future__ import annotations

import ssl
import urllib.error

import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from tests.servers.elasticsearch import (
    TlsProxy,
    block_writes,
    es_request,
    is_429,
    provoke_429,
    search,
)

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]


def test_root_shows_a_real_elasticsearch_build(elasticsearch_url: str) -> None:
    status, body = es_request(elasticsearch_url, "GET", "/")
    assert status == 200, body
    version = body["version"]
    assert version["number"].startswith("8."), version
    assert version["build_flavor"] == "default"
    assert len(version["build_hash"]) == 40
    assert version["build_snapshot"] is False
    assert version["lucene_version"].startswith("9.")
    assert body["tagline"] == "You Know, for Search"


def test_official_client_talks_to_the_node(elasticsearch_url: str, es_index: str) -> None:
    with Elasticsearch(elasticsearch_url, request_timeout=30) as client:
        info = client.info()
        assert info["version"]["number"].startswith("8.")
        client.index(index=es_index, id="1", document={"message": "from the client"})
        client.indices.refresh(index=es_index)
        hits = client.search(index=es_index, query={"match": {"message": "client"}})
        assert hits["hits"]["total"]["value"] == 1


def test_index_and_search_a_document(elasticsearch_url: str, es_index: str) -> None:
    status, body = es_request(
        elasticsearch_url,
        "POST",
        "/_bulk",
        ndjson=[
            {"index": {"_index": es_index}},
            {"@timestamp": "2026-01-01T00:00:00Z", "message": "hello sidecar", "level": "info"},
            {"index": {"_index": es_index}},
            {"@timestamp": "2026-01-01T00:00:01Z", "message": "other line", "level": "warn"},
        ],
    )
    assert status == 200 and body["errors"] is False, body
    hits = search(elasticsearch_url, es_index, {"match": {"message": "sidecar"}})
    assert [h["message"] for h in hits] == ["hello sidecar"]


def test_strict_mapping_rejects_a_document(elasticsearch_url: str, es_strict_index: str) -> None:
    good = {"@timestamp": "2026-01-01T00:00:00Z", "message": "fits", "level": "info"}
    status, body = es_request(elasticsearch_url, "POST", f"/{es_strict_index}/_doc", good)
    assert status == 201, body

    status, body = es_request(
        elasticsearch_url, "POST", f"/{es_strict_index}/_doc", {**good, "unknown_field": 1}
    )
    assert status == 400
    assert body["error"]["type"] == "strict_dynamic_mapping_exception"

    # In a bulk request only the bad item fails; the good one is indexed.
    status, body = es_request(
        elasticsearch_url,
        "POST",
        "/_bulk",
        ndjson=[
            {"index": {"_index": es_strict_index}},
            good,
            {"index": {"_index": es_strict_index}},
            {**good, "unknown_field": 2},
        ],
    )
    assert status == 200 and body["errors"] is True
    statuses = [item["index"]["status"] for item in body["items"]]
    assert statuses == [201, 400]
    assert body["items"][1]["index"]["error"]["type"] == "strict_dynamic_mapping_exception"


def test_blocked_index_answers_429(elasticsearch_url: str, es_index: str) -> None:
    doc = {"message": "before"}
    status, body = es_request(elasticsearch_url, "POST", f"/{es_index}/_doc", doc)
    assert status == 201, body
    with block_writes(elasticsearch_url, es_index):
        status, body = es_request(elasticsearch_url, "POST", f"/{es_index}/_doc", doc)
        assert status == 429
        assert body["error"]["type"] == "cluster_block_exception"
        status, body = es_request(
            elasticsearch_url, "POST", "/_bulk", ndjson=[{"index": {"_index": es_index}}, doc]
        )
        assert status == 200 and body["items"][0]["index"]["status"] == 429
        assert is_429(status, body)
    status, body = es_request(elasticsearch_url, "POST", f"/{es_index}/_doc", doc)
    assert status == 201, body


@pytest.mark.timeout(300)
def test_small_write_queue_rejects_with_429(elasticsearch_small_queue_url: str) -> None:
    results = provoke_429(elasticsearch_small_queue_url, "queue-429")
    rejected = [(s, b) for s, b in results if is_429(s, b)]
    assert rejected, f"no 429 in {len(results)} concurrent bulk requests"
    status, body = rejected[0]
    text = str(body)
    assert "es_rejected_execution_exception" in text, (status, text[:500])
    es_request(elasticsearch_small_queue_url, "DELETE", "/queue-429")


def test_tls_proxy_with_right_ca_and_credentials(
    elasticsearch_tls_proxy: TlsProxy, es_index: str
) -> None:
    proxy = elasticsearch_tls_proxy
    assert proxy.url.startswith("https://")
    status, body = es_request(
        proxy.url, "GET", "/", headers=proxy.auth_header(), context=proxy.ssl_context()
    )
    assert status == 200 and body["version"]["number"].startswith("8."), body

    with Elasticsearch(
        proxy.url, ca_certs=proxy.ca_path, basic_auth=(proxy.user, proxy.password)
    ) as client:
        client.index(index=es_index, document={"message": "over tls"}, refresh=True)
        assert client.count(index=es_index)["count"] == 1


def test_tls_proxy_rejects_wrong_credentials(elasticsearch_tls_proxy: TlsProxy) -> None:
    proxy = elasticsearch_tls_proxy
    status, _ = es_request(proxy.url, "GET", "/", context=proxy.ssl_context())
    assert status == 401
    bad = TlsProxy(proxy.url, proxy.ca_path, proxy.user, "wrong")
    status, _ = es_request(
        proxy.url, "GET", "/", headers=bad.auth_header(), context=bad.ssl_context()
    )
    assert status == 401
    with Elasticsearch(proxy.url, ca_certs=proxy.ca_path, basic_auth=(proxy.user, "wrong")) as c:
        with pytest.raises(AuthenticationException):
            c.info()


def test_tls_proxy_rejects_untrusted_ca(elasticsearch_tls_proxy: TlsProxy) -> None:
    proxy = elasticsearch_tls_proxy
    with pytest.raises(urllib.error.URLError) as err:
        es_request(
            proxy.url, "GET", "/", headers=proxy.auth_header(), context=ssl.create_default_context()
        )
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.timeout(600)
def test_secure_node_authenticates_over_tls(elasticsearch_secure: TlsProxy, es_index: str) -> None:
    node = elasticsearch_secure
    assert node.url.startswith("https://localhost:")
    with Elasticsearch(node.url, ca_certs=node.ca_path, basic_auth=(node.user, node.password)) as c:
        assert c.info()["version"]["number"].startswith("8.")
        c.index(index=es_index, document={"message": "secured"}, refresh=True)
        assert c.count(index=es_index)["count"] == 1
        c.indices.delete(index=es_index)

    status, body = es_request(node.url, "GET", "/", context=node.ssl_context())
    assert status == 401 and body["error"]["type"] == "security_exception"
    bad = TlsProxy(node.url, node.ca_path, node.user, "wrong-password")
    status, body = es_request(
        node.url, "GET", "/", headers=bad.auth_header(), context=bad.ssl_context()
    )
    assert status == 401 and body["error"]["type"] == "security_exception"
    with pytest.raises(urllib.error.URLError):
        es_request(
            node.url, "GET", "/", headers=node.auth_header(), context=ssl.create_default_context()
        )
