"""A real Elasticsearch node for the tests, and helpers to make it fail for real.

Loaded as a pytest plugin (``pytest_plugins = ["tests.servers.elasticsearch"]``).

Fixtures:

* ``elasticsearch_url`` (session): ``str`` base URL without a trailing slash. Uses the
  ``ELASTICSEARCH_URL`` environment variable when set (your own cluster), else starts the
  node with ``elasticsearch/es-node start`` on ``ES_PORT`` (default 9200) and stops it at
  the end of the session only if this session started it.
* ``es_index`` (function): a unique, not yet existing index name; deleted afterwards.
* ``es_strict_index`` (function): like ``es_index`` but created with a strict mapping
  (see :func:`create_strict_index`): documents with unmapped fields are rejected (400).
* ``elasticsearch_small_queue_url`` (session): a second node (own port) whose write thread
  pool has 1 thread and a queue of 1, so concurrent bulk requests get real 429s.
* ``elasticsearch_tls_proxy`` (session): nginx with TLS (a ``trustme`` test CA) and basic
  auth in front of ``elasticsearch_url``; yields :class:`TlsProxy`.
* ``elasticsearch_secure`` (session): a separate node with Elasticsearch's own security
  (HTTPS with a ``trustme`` CA, a file-realm user); yields :class:`TlsProxy` too.

Helpers: :func:`es_request`, :func:`create_strict_index`, :func:`block_writes` (real 429s
on one index of the normal node), :func:`refresh`, :func:`search`, :func:`provoke_429`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
ES_NODE = REPO_ROOT / "elasticsearch" / "es-node"
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")

#: Covers a cold start: Maven download of the distribution (~110 MB) plus node start.
START_TIMEOUT_S = float(os.environ.get("ES_FIXTURE_START_TIMEOUT", "600"))
REQUEST_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- HTTP helpers


def es_request(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    ndjson: list[Any] | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """Send one request; return ``(status, decoded JSON body or None)``.

    HTTP error statuses are returned, not raised. ``ndjson`` sends a bulk body.
    """
    data: bytes | None = None
    hdrs = dict(headers or {})
    if ndjson is not None:
        data = ("\n".join(json.dumps(line) for line in ndjson) + "\n").encode()
        hdrs.setdefault("Content-Type", "application/x-ndjson")
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
        err.close()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def refresh(url: str, index: str) -> None:
    """Make everything indexed so far visible to search."""
    status, body = es_request(url, "POST", f"/{index}/_refresh")
    assert status == 200, body


def search(url: str, index: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Refresh ``index`` and return the ``_source`` of the hits of ``query`` (default: all)."""
    refresh(url, index)
    status, body = es_request(
        url, "POST", f"/{index}/_search", {"query": query or {"match_all": {}}, "size": 1000}
    )
    assert status == 200, body
    return [hit["_source"] for hit in body["hits"]["hits"]]


def delete_index(url: str, index: str) -> None:
    """Delete ``index`` if it exists."""
    status, body = es_request(url, "DELETE", f"/{index}")
    assert status in (200, 404), body


def create_strict_index(
    url: str, index: str, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Create ``index`` with ``dynamic: strict``: a document with a field not in
    ``properties`` is rejected with 400 ``strict_dynamic_mapping_exception``.

    Default properties: ``@timestamp`` (date), ``message`` (text), ``level`` (keyword).
    """
    props = properties or {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "level": {"type": "keyword"},
    }
    mapping = {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"dynamic": "strict", "properties": props},
    }
    status, body = es_request(url, "PUT", f"/{index}", mapping)
    assert status == 200, body
    return mapping


@contextlib.contextmanager
def block_writes(url: str, index: str) -> Iterator[None]:
    """Make the real node answer writes to ``index`` with 429 while inside the block.

    Sets ``index.blocks.read_only_allow_delete`` (what Elasticsearch itself does when a disk
    passes the flood-stage watermark): index/bulk requests get 429
    ``cluster_block_exception`` (bulk: per item). The block is lifted on exit.
    """
    status, body = es_request(
        url, "PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": True}
    )
    assert status == 200, body
    try:
        yield
    finally:
        status, body = es_request(
            url, "PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": None}
        )
        assert status in (200, 404), body


def provoke_429(
    url: str, index: str, *, concurrency: int = 16, rounds: int = 5, docs: int = 500
) -> list[tuple[int, Any]]:
    """Fire concurrent bulk requests at ``url`` (meant for ``elasticsearch_small_queue_url``)
    until some are rejected with 429; return all ``(status, body)`` results.

    Bounded: at most ``rounds`` rounds of ``concurrency`` requests.
    """
    lines: list[Any] = []
    for n in range(docs):
        lines.append({"index": {"_index": index}})
        lines.append({"message": "x" * 200, "n": n})

    def one(_: int) -> tuple[int, Any]:
        return es_request(url, "POST", "/_bulk", ndjson=lines, timeout=60)

    results: list[tuple[int, Any]] = []
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            batch = list(pool.map(one, range(concurrency)))
            results.extend(batch)
            if any(is_429(status, body) for status, body in batch):
                break
    return results


def is_429(status: int, body: Any) -> bool:
    """True for a 429 answer, or a bulk answer with at least one item rejected with 429."""
    if status == 429:
        return True
    if status == 200 and isinstance(body, dict) and body.get("errors"):
        return any(next(iter(item.values())).get("status") == 429 for item in body.get("items", []))
    return False


# --------------------------------------------------------------------------- node control


def _wait_answers(url: str, deadline: float, context: ssl.SSLContext | None = None) -> None:
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = es_request(url, "GET", "/_cluster/health", timeout=5, context=context)
            if status == 200:
                return
            last = (status, body)
        except (OSError, urllib.error.URLError) as err:
            last = err
        time.sleep(0.25)  # between readiness checks, bounded by the deadline
    raise TimeoutError(f"{url} did not answer before the deadline: {last!r}")


def _es_node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ES_NODE), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


@dataclass(frozen=True)
class ManagedNode:
    """A node started (or reused) through ``elasticsearch/es-node``."""

    url: str
    port: int
    started_here: bool
    node_dir: Path


def start_node(port: int, env: dict[str, str] | None = None, *args: str) -> ManagedNode:
    """Start (or reuse) the es-node node on ``port``; ``env`` may set ES_WRITE_QUEUE_SIZE etc.,
    ``args`` are extra ``es-node start`` arguments (``--secure``, ``-E key=value``).

    Several test sessions may share one node: each holds a lease (a file named by its pid
    in the node dir), and the last one to leave stops a node that a fixture started. A node
    you started yourself with es-node is never stopped by the fixtures.
    """
    running = _es_node("status", "--port", str(port), env=env).returncode == 0
    proc = _es_node("start", "--port", str(port), *args, env=env)
    if proc.returncode != 0:
        pytest.fail(f"es-node start --port {port} failed:\n{proc.stderr}", pytrace=False)
    url = proc.stdout.strip().splitlines()[-1]
    node_dir = Path(_es_node("dir", "--port", str(port), env=env).stdout.strip())
    with _leases_locked(node_dir) as leases:
        (leases / str(os.getpid())).touch()
        if not running:
            (node_dir / _STARTED_BY_FIXTURE).touch()
    return ManagedNode(url=url, port=port, started_here=not running, node_dir=node_dir)


_STARTED_BY_FIXTURE = "started-by-fixture"


@contextlib.contextmanager
def _leases_locked(node_dir: Path) -> Iterator[Path]:
    leases = node_dir / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    with (leases / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield leases
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_node(node: ManagedNode, *, wipe: bool = False) -> None:
    """Drop this session's lease; stop the node (``wipe``: and delete its dir) if a fixture
    started it and no other live session holds a lease."""
    with _leases_locked(node.node_dir) as leases:
        (leases / str(os.getpid())).unlink(missing_ok=True)
        others = [f for f in leases.iterdir() if f.name.isdigit() and _pid_alive(int(f.name))]
        if others or not (node.node_dir / _STARTED_BY_FIXTURE).exists():
            return
    _es_node("clean" if wipe else "stop", "--port", str(node.port))
    (node.node_dir / _STARTED_BY_FIXTURE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    """Base URL of a real Elasticsearch: ``$ELASTICSEARCH_URL`` or the es-node node."""
    own = os.environ.get("ELASTICSEARCH_URL")
    if own:
        yield own.rstrip("/")
        return
    node = start_node(int(os.environ.get("ES_PORT", "9200")))
    try:
        _wait_answers(node.url, time.monotonic() + 60)
        yield node.url
    finally:
        stop_node(node)


@pytest.fixture(scope="session")
def elasticsearch_small_queue_url() -> Iterator[str]:
    """A second node whose write pool has 1 thread and a queue of 1: concurrent bulk
    requests get real 429 ``es_rejected_execution_exception`` (see :func:`provoke_429`).

    Its port comes from ``ES_SMALL_QUEUE_PORT`` or is a free one.
    """
    port = int(os.environ.get("ES_SMALL_QUEUE_PORT", "0")) or free_port()
    node = start_node(port, env={"ES_WRITE_QUEUE_SIZE": "1", "ES_WRITE_THREADS": "1"})
    try:
        yield node.url
    finally:
        stop_node(node, wipe=True)


# a recent 8.x for what 8.7.1 cannot parse (a data stream lifecycle in a template); it
# answers GET / with 405 (see elasticsearch/README.md), so readiness asks /_cluster/health
RECENT_ES_VERSION = "8.19.21"


def distribution(version: str = "") -> Path:
    """The unpacked distribution (ES_HOME) of `version` (default: es-node's), fetched once."""
    proc = _es_node("fetch", env={"ES_VERSION": version} if version else None)
    if proc.returncode != 0:
        pytest.fail(f"es-node fetch failed:\n{proc.stderr}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def elasticsearch_recent_url() -> Iterator[str]:
    """A node of RECENT_ES_VERSION on ``ES_RECENT_PORT`` or a free port."""
    port = int(os.environ.get("ES_RECENT_PORT", "0")) or free_port()
    node = start_node(port, env={"ES_VERSION": RECENT_ES_VERSION})
    try:
        _wait_answers(node.url, time.monotonic() + 60)
        yield node.url
    finally:
        stop_node(node, wipe=True)


def _index_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def es_index(elasticsearch_url: str) -> Iterator[str]:
    """A unique index name (the index does not exist yet); deleted after the test."""
    name = _index_name()
    yield name
    delete_index(elasticsearch_url, name)


@pytest.fixture
def es_strict_index(elasticsearch_url: str) -> Iterator[str]:
    """A fresh index with a strict mapping (see :func:`create_strict_index`)."""
    name = _index_name()
    create_strict_index(elasticsearch_url, name)
    yield name
    delete_index(elasticsearch_url, name)


@dataclass(frozen=True)
class TlsProxy:
    """An HTTPS + basic-auth Elasticsearch endpoint with a test CA: the nginx proxy
    (``elasticsearch_tls_proxy``) or the node's own security (``elasticsearch_secure``)."""

    url: str
    ca_path: str
    user: str
    password: str

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA."""
        return ssl.create_default_context(cafile=self.ca_path)

    def auth_header(self) -> dict[str, str]:
        """The ``Authorization`` header for the right credentials."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


_NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{user_line}
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 200m;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {dir}/chain.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        auth_basic "sidecars test Elasticsearch";
        auth_basic_user_file {dir}/htpasswd;
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_read_timeout 120s;
            proxy_buffering off;
        }}
    }}
}}
"""


@pytest.fixture(scope="session")
def elasticsearch_tls_proxy(
    elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsProxy]:
    """nginx (Debian's nginx-light) serving HTTPS + basic auth on a free loopback port and
    proxying to ``elasticsearch_url``. Wrong credentials get nginx's 401; no trust in the
    test CA gets a TLS verification error."""
    if not Path(NGINX).exists() and shutil.which("nginx") is None:
        pytest.skip(f"nginx not found at {NGINX} (apt-get install nginx-light)")
    nginx = NGINX if Path(NGINX).exists() else str(shutil.which("nginx"))
    workdir = tmp_path_factory.mktemp("es-tls-proxy")
    ca_path, _, _ = _write_test_certs(workdir)
    user, password = "shipper", f"pw-{uuid.uuid4().hex[:16]}"
    sha = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    (workdir / "htpasswd").write_text(f"{user}:{{SHA}}{sha}\n")
    port = free_port()
    # As root, nginx workers would run as `nobody` and could not read the htpasswd file in
    # pytest's private temp dir; keep them as the current user.
    user_line = "user root root;" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(dir=workdir, port=port, upstream=elasticsearch_url, user_line=user_line)
    )
    log = (workdir / "nginx.out").open("wb")
    proc = subprocess.Popen(
        [
            nginx,
            "-p",
            str(workdir),
            "-c",
            str(conf),
            "-e",
            str(workdir / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proxy = TlsProxy(f"https://localhost:{port}", str(ca_path), user, password)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {proc.returncode}: "
                    f"{(workdir / 'error.log').read_text(errors='replace')}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx did not listen before the deadline") from None
                time.sleep(0.1)  # between readiness checks, bounded by the deadline
        _wait_answers_with_auth(proxy, time.monotonic() + 20)
        yield proxy
    finally:
        stop_process(proc)
        log.close()


def _wait_answers_with_auth(proxy: TlsProxy, deadline: float) -> None:
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = es_request(
                proxy.url,
                "GET",
                "/_cluster/health",
                timeout=5,
                headers=proxy.auth_header(),
                context=proxy.ssl_context(),
            )
            if status == 200:
                return
            last = (status, body)
        except (OSError, urllib.error.URLError) as err:
            last = err
        time.sleep(0.2)  # between readiness checks, bounded by the deadline
    raise TimeoutError(f"TLS proxy {proxy.url} did not answer: {last!r}")


def _write_test_certs(workdir: Path) -> tuple[Path, Path, Path]:
    """A trustme CA and a server certificate for localhost/127.0.0.1: (ca, chain, key)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_path, chain_path, key_path = workdir / "ca.pem", workdir / "chain.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    with chain_path.open("wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    return ca_path, chain_path, key_path


@pytest.fixture(scope="session")
def elasticsearch_secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProxy]:
    """A separate node with Elasticsearch's own security on: HTTPS (trustme test CA) and one
    file-realm superuser. Wrong credentials get Elasticsearch's own 401
    ``security_exception``. Started with ``es-node start --secure`` on a free port (or
    ``ES_SECURE_PORT``) and wiped at the end of the session."""
    workdir = tmp_path_factory.mktemp("es-secure")
    ca_path, chain_path, key_path = _write_test_certs(workdir)
    user, password = "shipper", f"pw-{uuid.uuid4().hex[:16]}"
    port = int(os.environ.get("ES_SECURE_PORT", "0")) or free_port()
    env = {
        "ES_TLS_CERT": str(chain_path),
        "ES_TLS_KEY": str(key_path),
        "ES_TLS_CA": str(ca_path),
        "ES_USERNAME": user,
        "ES_PASSWORD": password,
    }
    node = start_node(port, env, "--secure")
    try:
        yield TlsProxy(node.url, str(ca_path), user, password)
    finally:
        stop_node(node, wipe=True)
