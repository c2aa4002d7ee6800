"""logshipper assembly: settings -> tailer -> batches -> senders -> checkpoints, in the runtime."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import stat
from typing import Any

from sidecars.logshipper.batching import Budget, Pipeline
from sidecars.logshipper.checkpoint import CheckpointError, CheckpointStore, Entry
from sidecars.logshipper.config import Config
from sidecars.logshipper.deadindex import DeadLetterIndex
from sidecars.logshipper.deadletter import DeadLetter
from sidecars.logshipper.documents import DocumentBuilder
from sidecars.logshipper.ecs import agent_id, parse_labels, static_fields
from sidecars.logshipper.files import CHUNK, Reader
from sidecars.logshipper.metrics import Metrics
from sidecars.logshipper.node import Node, NodeConfig, TransportError, tls_context
from sidecars.logshipper.pool import Pool
from sidecars.logshipper.scheduler import Scheduler
from sidecars.logshipper.shipping import Sender
from sidecars.logshipper.tailer import Tailer
from sidecars.logshipper.template import template_name, template_request
from sidecars.runtime import Backoff, ConfigError, Runtime, Sidecar
from sidecars.runtime.tasks import spawn
from sidecars.runtime.urls import parse_http_url

_ACCEPT = {"accept": "application/json"}
_JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}


def _short(body: bytes) -> str:
    return body[:300].decode(errors="replace")


def _metadata(config: Config) -> dict[str, Any]:
    """The static ECS fields; pod fields from the downward API: our settings, else the
    conventional variables."""
    env = os.environ
    labels = {}
    if config.pod_labels_file:
        try:
            with open(config.pod_labels_file, encoding="utf-8", errors="replace") as f:
                labels = parse_labels(f.read(1 << 20))
        except OSError as exc:
            raise ConfigError(
                [f"LOGSHIPPER_POD_LABELS_FILE={config.pod_labels_file!r}: cannot read ({exc})"]
            ) from None
    try:
        agent = agent_id(config.state_dir)
    except OSError as exc:
        raise ConfigError(
            [f"LOGSHIPPER_STATE_DIR={config.state_dir!r}: cannot keep the agent id ({exc})"]
        ) from None
    dataset, namespace = config.stream_parts
    return static_fields(
        dataset=dataset,
        namespace=namespace,
        agent=agent,
        pod={
            "name": config.pod_name or env.get("POD_NAME", ""),
            "uid": config.pod_uid or env.get("POD_UID", ""),
            "namespace": config.pod_namespace or env.get("POD_NAMESPACE", ""),
            "node": config.node_name or env.get("NODE_NAME", ""),
            "container": config.container_name or env.get("CONTAINER_NAME", ""),
        },
        labels=labels,
    )


def _check_files(config: Config) -> None:
    problems = []  # the TLS files were checked at start (settings' readable_file)
    try:
        os.makedirs(config.state_dir, exist_ok=True)
        writable = os.access(config.state_dir, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        problems.append(f"LOGSHIPPER_STATE_DIR={config.state_dir!r}: expected a writable directory")
    if problems:
        raise ConfigError(problems)


def _own_files(config: Config) -> set[tuple[int, int]]:
    """Files never to ship: our own stderr if it is a file, and the state directory's files."""
    keys = set()
    with contextlib.suppress(OSError):
        st = os.fstat(2)
        if stat.S_ISREG(st.st_mode):
            keys.add((st.st_dev, st.st_ino))
    with contextlib.suppress(OSError), os.scandir(config.state_dir) as it:
        for entry in it:
            keys.add((os.stat(entry.path).st_dev, entry.inode()))
    return keys


class Shipper:
    """The logshipper service: reads while there is room, ships, checkpoints, drains."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        config.check()
        _check_files(config)
        self.config, self.rt, self.log = config, rt, rt.log
        self.metrics = Metrics(rt.registry)
        self.budget = Budget(config.queue_max_bytes)
        self.metrics.queue_bytes.set_function(lambda: self.budget.used)
        self.pipeline = Pipeline(config.batch_max_bytes, config.batch_max_docs, self.budget)
        self.store = CheckpointStore(config.state_dir)
        self.dead_letter = DeadLetter(config.state_dir, config.dead_letter_max_size)
        self.builder = DocumentBuilder(
            config.target,
            create=config.data_stream,
            metadata=_metadata(config),
            json_lines=config.json,
            json_target=config.json_target,
            timestamp_field=config.timestamp_field,
            timestamp_regex=config.timestamp_regex,
        )
        self.reader = Reader(
            self.builder,
            self.pipeline,
            partial_flush=config.partial_flush,
            multiline_timeout=config.multiline_timeout,
            # one chunk's documents may overshoot the budget: keep that small next to it
            chunk=min(CHUNK, max(64 << 10, config.queue_max_bytes // 8)),
        )
        self._checkpoint_due = asyncio.Event()
        self._checkpoint_failures = 0
        self._answered = False
        self._template_done = asyncio.Event()
        self.transport = self._transport()

    def _transport(self) -> Pool:
        """The node pool (failover, dead nodes probed back); it never retries on its own: we
        retry forever, per item."""
        c = self.config
        headers = {"user-agent": "sidecars-logshipper"}
        if c.es_username:
            token = base64.b64encode(f"{c.es_username}:{c.es_password}".encode()).decode()
            headers["authorization"] = f"Basic {token}"
        if c.es_api_key:
            headers["authorization"] = f"ApiKey {c.es_api_key}"
        nodes = []
        try:
            for url in c.es_hosts:
                parts = parse_http_url(url)
                scheme, host, port, path = parts.scheme, parts.host, parts.port, parts.path
                tls = None
                if scheme == "https":
                    tls = tls_context(
                        host,
                        verify=c.es_verify_certs,
                        ca_file=c.es_ca_file,
                        client_cert=c.es_client_cert,
                        client_key=c.es_client_key,
                    )
                config = NodeConfig(
                    scheme=scheme,
                    host=host,
                    port=port,
                    path_prefix=path.rstrip("/"),
                    headers=headers,
                    request_timeout=c.es_timeout,
                    http_compress=c.es_gzip,
                    connections=c.max_in_flight + 1,
                    ssl_context=tls,
                )
                nodes.append(Node(config))
        except (OSError, ValueError) as exc:  # unreadable or unusable TLS files
            problem = f"LOGSHIPPER_ES_CA_FILE / _CLIENT_CERT / _CLIENT_KEY: unusable ({exc})"
            raise ConfigError([problem]) from None
        return Pool(nodes, dead_backoff_max=c.es_dead_backoff_max, log=self.log)

    def _on_answer(self) -> None:
        if not self._answered:
            self._answered = True
            self.rt.readiness.set(True)
            self.log.info("Elasticsearch answered; ready")

    async def _load_checkpoints(self) -> dict[str, Entry]:
        try:
            return await asyncio.to_thread(self.store.load)
        except CheckpointError as exc:
            aside = await asyncio.to_thread(self.store.quarantine)
            self.log.error(
                "checkpoint file unusable; moved aside, files are read again from the start "
                "(document ids are stable, so Elasticsearch keeps one copy)",
                extra={"error": str(exc), "moved_to": str(aside)},
            )
            return {}

    async def run(self, stopping: asyncio.Event) -> int:
        c = self.config
        self.rt.readiness.set(False, "Elasticsearch not reached yet")
        saved = await self._load_checkpoints()
        self.tailer = Tailer(
            c.paths,
            (*c.exclude, os.path.join(c.state_dir, "*")),
            self.reader,
            self.metrics,
            self.log,
            max_line=c.max_line_size,
            max_open=c.max_open_files,
            max_files=c.max_files,
            follow_symlinks=c.follow_symlinks,
            rotate_wait=c.rotate_wait,
            read_from_end=c.read_from == "end" and not saved,
            multiline=(c.multiline_pattern, c.multiline_max_lines, c.max_line_size)
            if c.multiline_pattern
            else None,
            skip=_own_files(c),
            checkpoints=saved,
            persist=lambda entries: self.store.save(entries, self.store.ticket()),
        )
        self.metrics.lag_source(self.rt.registry, self.tailer.lags)
        transport = self.transport
        sender = Sender(
            transport,
            create=c.data_stream,
            dead_letter=self.dead_letter,
            metrics=self.metrics,
            log=self.log,
            on_answer=self._on_answer,
            max_backoff=c.retry_max_backoff,
            dead_letter_index=DeadLetterIndex(
                transport, c.dead_letter_index, self.metrics, self.log
            )
            if c.dead_letter_index
            else None,
        )
        scheduler = Scheduler(
            self.tailer,
            self.budget,
            self.log,
            poll_interval=c.poll_interval,
            rescan_interval=c.rescan_interval,
        )
        workers = [spawn(f"sender {i + 1}", self._send(sender)) for i in range(c.max_in_flight)]
        helpers = [
            spawn("flusher", self._flusher()),
            spawn("checkpointer", self._checkpointer()),
            spawn("Elasticsearch probe", self._probe(transport), finite=True),
            spawn("index template", self._install_template(transport), finite=True),
        ]
        try:
            await spawn("reader", scheduler.run(stopping), beat_every=c.poll_interval)
            await self._drain()
        finally:
            for task in (*workers, *helpers):
                task.cancel()
            await asyncio.gather(*workers, *helpers, return_exceptions=True)
            await self._save_checkpoints()
            self.tailer.close()
            await transport.close()
        return 0

    async def _drain(self) -> None:
        """After SIGTERM: send what was read, within the drain budget, then stop. What is not
        acknowledged by then is read again at the next start (its checkpoint did not move)."""
        self.pipeline.seal()
        if not self._answered:
            # Nothing has ever got through (down, refused TLS, wrong product): waiting cannot
            # help, and the files still hold every line.
            self.log.warning(
                "Elasticsearch never answered; unacknowledged documents will be read again at "
                "next start",
                extra={"batches": self.pipeline.unresolved, "bytes": self.budget.used},
            )
            return
        limit = max(
            0.1, min(self.config.shutdown_timeout - 1.0, self.config.shutdown_timeout * 0.8)
        )
        try:
            async with asyncio.timeout(limit):
                await self.pipeline.drained()
        except TimeoutError:
            self.log.warning(
                "drain time is up; unacknowledged documents will be read again at next start",
                extra={"batches": self.pipeline.unresolved, "bytes": self.budget.used},
            )

    async def _send(self, sender: Sender) -> None:
        await self._template_done.wait()
        while True:
            batch = await self.pipeline.queue.get()
            await sender.deliver(batch.items, batch.docs)
            self.pipeline.resolved(batch)
            self._checkpoint_due.set()

    async def _flusher(self) -> None:
        interval = self.config.flush_interval
        while True:
            await asyncio.sleep(interval / 4)
            self.pipeline.seal(older_than=interval)
            self.metrics.lines_read.inc(self.reader.lines)
            self.metrics.bytes_read.inc(self.reader.bytes)
            self.reader.lines = self.reader.bytes = 0

    async def _checkpointer(self) -> None:
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            await self._save_checkpoints()
            await asyncio.sleep(self.config.checkpoint_interval)

    async def _save_checkpoints(self) -> None:
        try:
            ticket = self.store.ticket()
            await asyncio.to_thread(self.store.save, self.tailer.entries(), ticket)
        except OSError as exc:
            # retried each checkpoint interval (a full state volume frees up): nothing is
            # lost meanwhile, a restart only re-sends acknowledged records with their ids
            self.metrics.checkpoint_errors.inc()
            self._checkpoint_due.set()
            self._checkpoint_failures += 1
            if self._checkpoint_failures % 100 == 1:
                self.log.error(
                    "cannot write checkpoints; retrying",
                    extra={"error": str(exc), "failures": self._checkpoint_failures},
                )
            return
        if self._checkpoint_failures:
            self.log.info(
                "checkpoints written again", extra={"failures": self._checkpoint_failures}
            )
            self._checkpoint_failures = 0

    async def _install_template(self, transport: Pool) -> None:
        """Create the index template before the first document creates an index (the senders
        wait for this): retried until Elasticsearch answers at all, then done either way."""
        c = self.config
        if not c.index_template:
            self._template_done.set()
            return
        path, body = template_request(
            c.target,
            c.index_template_priority,
            replicas=c.index_replicas,
            data_stream=c.data_stream,
            ilm_policy=c.ilm_policy,
            data_retention=c.data_retention,
        )
        name = template_name(c.target)
        backoff = Backoff(0.1, 10.0)
        try:
            while True:
                try:
                    resp = await transport.request("PUT", path, body, _JSON_HEADERS)
                except TransportError:
                    await transport.pause(backoff.next_delay())
                    continue
                status = resp.status
                if 200 <= status < 300:
                    self.log.info("index template created", extra={"template": name})
                elif status == 400 and b"already exists" in resp.body:
                    self.log.info("index template already there, kept", extra={"template": name})
                else:
                    self.log.warning(
                        "index template not created; dynamic mapping applies",
                        extra={"template": name, "status": status, "error": _short(resp.body)},
                    )
                return
        finally:
            self._template_done.set()

    async def _probe(self, transport: Pool) -> None:
        """Readiness before any log line exists: ask the cluster until it answers."""
        backoff = Backoff(0.1, 10.0)
        while not self._answered:
            try:
                resp = await transport.request("GET", "/", headers=_ACCEPT)
                ok = 200 <= resp.status < 300
                if ok and resp.headers.get("x-elastic-product") == "Elasticsearch":
                    self._on_answer()
                    return
                reason = f"HTTP {resp.status}" if not ok else "not Elasticsearch"
            except TransportError as exc:
                reason = type(exc).__name__
            self.rt.readiness.set(False, f"Elasticsearch not reached: {reason}")
            await transport.pause(backoff.next_delay())


SIDECAR = Sidecar(
    name="logshipper",
    summary="Tail log files on the pod's shared volume and ship every record to Elasticsearch.",
    config=Config,
    admin_port=9181,
    build=Shipper,
)
