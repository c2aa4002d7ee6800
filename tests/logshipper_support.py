"""Helpers for the logshipper tests: a bulk sink for faults a real node cannot produce,
log writers, and index checks against the real Elasticsearch node."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.helpers import free_port, http_get, wait_until
from tests.servers.elasticsearch import es_request, refresh

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}

# Answer modes of the sink: "ok" answers like Elasticsearch; the others are the faults the
# issue lists (HTML, non-JSON, errors:true) that a healthy real node never produces.
Mode = str


class BulkSink:
    """An HTTP server on 127.0.0.1 that answers `/_bulk` like Elasticsearch and keeps the
    documents by (index, _id). It runs in its own thread and event loop, so blocking test
    code (subprocess waits) can use it. `mode` may be changed while it runs; with
    `fail_next` set, only that many requests get `mode`, later ones are answered normally."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.ssl_context = ssl_context
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests = 0
        self.mode: Mode = "ok"
        self.fail_next: int | None = None
        self.item_status: Callable[[dict[str, Any]], int] | None = None
        # mode "hostile": this handler answers instead (answers a real node never gives)
        self.hostile: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.gzipped = 0
        self.authorizations: set[str] = set()  # Authorization headers seen on /_bulk
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> BulkSink:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("bulk sink did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=200 << 20)
        app.router.add_get("/", self._info)
        app.router.add_post("/_bulk", self._bulk)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response({"version": {"number": "8.7.1"}}, headers=PRODUCT)

    async def _bulk(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.authorizations.add(request.headers.get("Authorization", ""))
        if request.headers.get("Content-Encoding") == "gzip":
            self.gzipped += 1  # aiohttp has already inflated the body
        with self._lock:
            self.requests += 1
            mode = self.mode
            if self.fail_next is not None:
                if self.fail_next > 0:
                    self.fail_next -= 1
                else:
                    mode = "ok"
        if mode.startswith("html"):
            return web.Response(
                status=502 if "502" in mode else 200,
                text="<html><body>Bad Gateway</body></html>",
                content_type="text/html",
                headers=PRODUCT,
            )
        if mode.startswith("nonjson"):
            return web.Response(
                text="this is not json", content_type="application/json", headers=PRODUCT
            )
        if mode == "hostile" and self.hostile is not None:
            return await self.hostile(request)
        if mode.startswith("noproduct"):
            return web.json_response({"took": 1, "errors": False, "items": []})
        lines = body.split(b"\n")
        items: list[bytes] = []
        errors = False
        with self._lock:
            for i in range(0, len(lines) - 1, 2):
                action = orjson.loads(lines[i])
                ((op, meta),) = action.items()
                doc = orjson.loads(lines[i + 1])
                status = 201
                if mode.startswith("errors"):
                    status = 429
                elif self.item_status is not None:
                    status = self.item_status(doc)
                if status < 300:
                    key = (meta["_index"], meta["_id"])
                    if op == "create" and key in self.docs:
                        status = 409
                    else:
                        self.docs[key] = doc
                item: dict[str, Any] = {
                    "_index": meta["_index"],
                    "_id": meta["_id"],
                    "status": status,
                }
                if status >= 300:
                    errors = True
                    item["error"] = {
                        "type": _ERROR_TYPES.get(status, "error"),
                        "reason": "test sink",
                    }
                items.append(orjson.dumps({op: item}))
        out = b'{"took":1,"errors":%s,"items":[%s]}' % (
            b"true" if errors else b"false",
            b",".join(items),
        )
        return web.Response(body=out, content_type="application/json", headers=PRODUCT)

    def messages(self) -> list[str]:
        with self._lock:
            return [d.get("message", "") for d in self.docs.values()]

    def count(self) -> int:
        with self._lock:
            return len(self.docs)


_ERROR_TYPES = {
    429: "es_rejected_execution_exception",
    400: "mapper_parsing_exception",
    409: "version_conflict_engine_exception",
}


def checksum(messages: list[str]) -> str:
    """Order-independent digest of a multiset of messages."""
    h = hashlib.sha256()
    for m in sorted(messages):
        h.update(m.encode(errors="replace") + b"\0")
    return h.hexdigest()


def es_messages(url: str, index: str) -> list[str]:
    """Every `message` in `index`, read from one point-in-time snapshot: re-sent documents
    replace themselves while we page, and paging without a snapshot could then skip or
    repeat documents that are in fact there exactly once."""
    refresh(url, index)
    status, body = es_request(url, "POST", f"/{index}/_pit?keep_alive=2m")
    assert status == 200, body
    pit = body["id"]
    out: list[str] = []
    search_after: list[Any] | None = None
    try:
        for _ in range(10_000):
            query: dict[str, Any] = {
                "size": 5000,
                "pit": {"id": pit, "keep_alive": "2m"},
                "sort": [{"_shard_doc": "asc"}],
                "_source": ["message"],
                "track_total_hits": False,
            }
            if search_after is not None:
                query["search_after"] = search_after
            status, body = es_request(url, "POST", "/_search", query)
            assert status == 200, body
            hits = body["hits"]["hits"]
            if not hits:
                return out
            out.extend(h["_source"].get("message", "") for h in hits)
            search_after = hits[-1]["sort"]
    finally:
        es_request(url, "DELETE", "/_pit", {"id": pit})
    raise AssertionError("too many pages")


def es_count(url: str, index: str) -> int:
    """Documents in `index` (0 while it does not exist)."""
    status, body = es_request(url, "POST", f"/{index}/_refresh")
    if status == 404:
        return 0
    status, body = es_request(url, "GET", f"/{index}/_count")
    if status == 404:
        return 0
    assert status == 200, body
    return int(body["count"])


class LogWriter:
    """Appends numbered lines to a file, like an application would."""

    def __init__(self, path: Path, prefix: str = "line") -> None:
        self.path = path
        self.prefix = prefix
        self.written: list[str] = []

    def write(self, n: int, *, size: int = 60) -> None:
        with self.path.open("a") as f:
            for _ in range(n):
                msg = f"{self.prefix} {len(self.written):08d} " + "x" * max(0, size - 20)
                f.write(msg + "\n")
                self.written.append(msg)


def metric(admin: str, name: str, labels: str = "") -> float:
    """The value of one sample on the admin server's /metrics (0 if absent)."""
    status, body = http_get(f"{admin}/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + (labels and "{")) or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            if labels and labels not in key:
                continue
            if key.split("{")[0] == name:
                total += float(value)
    return total


def lines_in(path: Path) -> Iterator[dict[str, Any]]:
    if path.exists():
        for line in path.read_bytes().splitlines():
            yield orjson.loads(line)


# a strict mapping that takes every field the shipper writes, so that only an app's
# unmapped JSON field is refused
_LOOSE = {"type": "object", "dynamic": True}
STRICT_SHIPPER_MAPPING: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "message": {"type": "text"},
    "tags": {"type": "keyword"},
    **{
        name: _LOOSE for name in ("log", "kubernetes", "ecs", "host", "agent", "container", "event")
    },
    "data_stream": _LOOSE,
}


def shipper_env(logs: Path, state: Path, hosts: str, index: str, **extra: str) -> dict[str, str]:
    """Settings for a logshipper subprocess with short timers, so tests run fast."""
    env = {
        "LOGSHIPPER_PATHS": str(logs / "*.log"),
        "LOGSHIPPER_ES_HOSTS": hosts,
        "LOGSHIPPER_INDEX": index,
        "LOGSHIPPER_STATE_DIR": str(state),
        "LOGSHIPPER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
        "LOGSHIPPER_FLUSH_INTERVAL": "50ms",
        "LOGSHIPPER_POLL_INTERVAL": "100ms",
        "LOGSHIPPER_RESCAN_INTERVAL": "300ms",
        "LOGSHIPPER_PARTIAL_FLUSH": "500ms",
        "LOGSHIPPER_ROTATE_WAIT": "1s",
        "LOGSHIPPER_CHECKPOINT_INTERVAL": "100ms",
        "LOGSHIPPER_RETRY_MAX_BACKOFF": "500ms",
        "LOGSHIPPER_SHUTDOWN_TIMEOUT": "10s",
        "LOGSHIPPER_LOG_LEVEL": "info",
        # templates outlive the per-test indices on the shared node: only the tests of the
        # template turn it on (and delete it)
        "LOGSHIPPER_INDEX_TEMPLATE": "false",
    }
    if "%" in index:
        env["LOGSHIPPER_DATA_STREAM"] = "false"  # a date pattern names plain indices
    env.update({f"LOGSHIPPER_{k.upper()}": v for k, v in extra.items()})
    return env


def wait_metric(
    admin: str, name: str, labels: str, at_least: float, what: str, within: float = 30
) -> None:
    """Until the metric `name{labels}` on `admin` reaches `at_least` (deadline `within` s)."""
    wait_until(lambda: metric(admin, name, labels) >= at_least, within, what)


def admin_url(env: dict[str, str]) -> str:
    return "http://" + env["LOGSHIPPER_ADMIN_ADDR"]


def checkpoint_offsets(state: Path) -> dict[str, int]:
    """path -> acknowledged offset, from the checkpoint file."""
    doc = orjson.loads((state / "checkpoints.json").read_bytes())
    return {e["path"]: e["offset"] for e in doc["files"].values()}


class CuttableProxy:
    """A TCP forwarder on 127.0.0.1 in front of a real server. `cut()` closes the listener
    and every connection (clients see refused connections: an outage); `restore()` listens
    on the same port again. Runs in its own thread and event loop."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()

        async def settle() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(settle())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def restore(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._call(listen())

    def cut(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._call(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def make_chain(top: Path, depth: int, leaf: str) -> None:
    """Directories top/a/a/.../a, `depth` deep, with an empty file `leaf` at the bottom
    (made through directory fds: the path grows past PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        deeper = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(os.open(leaf, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)


def remove_chain(top: Path, depth: int) -> None:
    """Remove what make_chain made below `top` (`top` = its first `a`) bottom up: rmtree
    (and pytest's temp cleanup) recurse once per level and fail on it."""
    fds = [os.open(top, os.O_RDONLY)]
    for _ in range(depth - 1):
        fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
    for fd in fds:
        for name in os.listdir(fd):
            if name != "a":
                os.unlink(name, dir_fd=fd)
    for parent in reversed(fds[:-1]):
        os.close(fds.pop())
        os.rmdir("a", dir_fd=parent)
    os.close(fds.pop())
    top.rmdir()


def fill_volume(where: Path, leave: int = 0) -> Path:
    """Take every free byte of the volume `where` but `leave` (a file `filler`, returned)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A log directory (made) and a state directory (left for the shipper to make)."""
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    return logs, state
