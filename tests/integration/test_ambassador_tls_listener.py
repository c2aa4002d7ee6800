"""TLS termination: the app speaks TLS to the listener (curl, openssl s_client, Python's ssl),
with certificates made here (trustme); members are plain echo and HTTP servers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from sidecars.ambassador.service import SIDECAR
from sidecars.ambassador.spec import from_settings
from tests.ambassador_support import ambassador, backends, echo_member, metric_value, wait_for
from tests.helpers import SidecarProcess, free_port, run_sidecar
from tests.tls_support import expired, write_leaf

pytestmark = pytest.mark.integration
FAILURES = "ambassador_listener_tls_handshake_failures_total"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A plain echo server (the member)."""
    async with echo_member() as port:
        yield port


def term_env(tmp_path: Path, cert: trustme.LeafCert, member: int, **extra: str) -> dict[str, str]:
    crt, key = write_leaf(cert, tmp_path, "server")
    env = {
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member}",
        "AMBASSADOR_HEALTH_CHECK": "none",
        "AMBASSADOR_LISTEN_TLS_CERT_FILE": crt,
        "AMBASSADOR_LISTEN_TLS_KEY_FILE": key,
    }
    env.update({f"AMBASSADOR_{k.upper()}": v for k, v in extra.items()})
    return env


def client_ctx(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


async def tls_echo(port: int, ctx: ssl.SSLContext, data: bytes) -> bytes:
    """Send `data` over TLS and read as much back."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        try:
            writer.write(data)
            await writer.drain()
            return await reader.readexactly(len(data))
        finally:
            writer.close()


async def metrics_text(admin: int) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{admin}/metrics") as resp:
            return await resp.text()


def hello_at_once(port: int, ctx: ssl.SSLContext, n: int) -> int:
    """`n` blocking clients, each sending its ClientHello the moment connect returns (as wrk
    does) and echoing a line within 3 s; returns how many did."""
    done = 0
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"at once\n")
                if s.recv(64) == b"at once\n":
                    done += 1
    return done


async def failed(admin: int, reason: str) -> float:
    text = await metrics_text(admin)
    return metric_value(text, FAILURES, listener="default", reason=reason)


async def run(*argv: str, stdin: bytes = b"") -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(20):
        out, _ = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out


async def test_tcp_mode_terminates_tls_for_python_and_openssl(
    tmp_path: Path, ca: trustme.CA, echo_port: int
) -> None:
    """Python's ssl and openssl s_client, trusting the CA, reach the plain member through the
    TLS listener; bulk data (beyond the splice threshold) comes back whole."""
    async with ambassador(term_env(tmp_path, ca.issue_cert("127.0.0.1"), echo_port)) as amb:
        ctx = client_ctx(ca)
        assert await tls_echo(amb.port, ctx, b"hello\n") == b"hello\n"
        big = os.urandom(2 * 1024 * 1024)
        assert await tls_echo(amb.port, ctx, big) == big
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{amb.port}", "-CAfile", str(ca_file),
            "-verify_return_error", "-quiet",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"from openssl\n")
            async with asyncio.timeout(10):
                assert await proc.stdout.readline() == b"from openssl\n"
        finally:
            proc.kill()
            await proc.wait()
        assert await failed(amb.admin_port, "verify_failed") == 0


async def test_http_mode_keep_alive_through_tls_with_curl(tmp_path: Path, ca: trustme.CA) -> None:
    """curl --cacert gets two answers over one TLS connection (keep-alive through TLS: one
    handshake counted); curl trusting another CA, or a server certificate that has expired, is
    refused by curl and counted as client_refused."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with backends(1) as (backend,):
        env = term_env(tmp_path, ca.issue_cert("127.0.0.1"), backend.port, mode="http")
        async with ambassador(env) as amb:
            url = f"https://127.0.0.1:{amb.port}/x"
            code, out = await run(
                "curl", "-s", "--cacert", str(ca_file), "-w", " %{num_connects}\n", url, url
            )
            assert code == 0 and out == b"b0 1\nb0 0\n", out  # the second reused the connection
            text = await metrics_text(amb.admin_port)
            name = "ambassador_listener_tls_handshakes_total"
            assert metric_value(text, name, listener="default") == 1
            code, _ = await run("curl", "-s", "--cacert", str(other), url)
            assert code == 60  # the peer's certificate was refused
            await wait_for_count(amb.admin_port, "client_refused", 1)
        env = term_env(tmp_path, expired(ca, "127.0.0.1"), backend.port, mode="http")
        async with ambassador(env) as amb:
            code, _ = await run(
                "curl", "-s", "--cacert", str(ca_file), f"https://127.0.0.1:{amb.port}/x"
            )
            assert code == 60
            await wait_for_count(amb.admin_port, "client_refused", 1)


async def wait_for_count(admin: int, reason: str, at_least: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await failed(admin, reason) < at_least:
        assert loop.time() < deadline, f"no {reason} handshake failure counted"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_client_certificates_from_the_app(
    tmp_path: Path, ca: trustme.CA, echo_port: int, mode: str
) -> None:
    """With a client CA, a client without a certificate, with one from another CA or with an
    expired one is refused, each counted by its reason; one with a good certificate passes."""
    client_ca = trustme.CA()
    bundle = tmp_path / "clients.pem"
    client_ca.cert_pem.write_to_path(str(bundle))
    async with backends(1) as (backend,):
        member = echo_port if mode == "tcp" else backend.port
        env = term_env(
            tmp_path, ca.issue_cert("127.0.0.1"), member, mode=mode,
            listen_tls_client_ca_file=str(bundle), listen_tls_min_version="1.3",
        )  # fmt: skip
        async with ambassador(env) as amb:
            data = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n" if mode == "http" else b"ping\n"
            cases = [
                (None, "no_certificate"),
                (trustme.CA().issue_cert("app"), "verify_failed"),
                (expired(client_ca, "app"), "expired"),
            ]
            for cert, reason in cases:
                with pytest.raises((ssl.SSLError, OSError, asyncio.IncompleteReadError)):
                    await tls_echo(amb.port, client_ctx(ca, cert), data)
                await wait_for_count(amb.admin_port, reason, 1)
            got = await tls_echo(amb.port, client_ctx(ca, client_ca.issue_cert("app")), data)
            assert got.startswith(b"HTTP/1.1 200") if mode == "http" else got == data


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_a_client_stalling_its_handshake_loses_its_slot(
    tmp_path: Path, ca: trustme.CA, echo_port: int, mode: str
) -> None:
    """A client that connects and never sends a ClientHello holds its slot (max_connections
    1) only until the handshake timeout: then it is cut, counted as timeout, and the next
    client gets in."""
    env = term_env(
        tmp_path, ca.issue_cert("127.0.0.1"), echo_port, mode=mode, max_connections="1",
        listen_tls_handshake_timeout="0.5s",
    )  # fmt: skip
    async with ambassador(env) as amb:
        loop = asyncio.get_running_loop()
        staller = socket.create_connection(("127.0.0.1", amb.port))
        staller.setblocking(False)
        try:
            listener = next(iter(amb.service.running.values())).listener
            await wait_for(lambda: len(listener.conns) == 1, 5, "the staller is admitted")
            started = loop.time()
            async with asyncio.timeout(10):
                assert await loop.sock_recv(staller, 1) == b""  # cut by the ambassador
            assert 0.3 < loop.time() - started < 5
        finally:
            staller.close()
        assert await failed(amb.admin_port, "timeout") == 1
        await wait_for(lambda: not listener.conns, 5, "the slot is free again")
        if mode == "tcp":
            assert await tls_echo(amb.port, client_ctx(ca), b"next\n") == b"next\n"


async def test_rotated_server_certificate_for_new_connections_only(
    tmp_path: Path, ca: trustme.CA, echo_port: int
) -> None:
    """Certificate and key files replaced (a Secret's swap) are used by new connections; a
    connection opened before keeps relaying."""
    first = ca.issue_cert("127.0.0.1", common_name="first")
    env = term_env(tmp_path, first, echo_port, file_interval="0.05s")
    async with ambassador(env) as amb:
        ctx = client_ctx(ca)
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port, ssl=ctx)
        try:
            assert _cn(writer) == "first"
            new = tmp_path / "new"
            new.mkdir()
            crt, key = write_leaf(ca.issue_cert("127.0.0.1", common_name="second"), new, "s")
            os.replace(key, tmp_path / "server.key")
            os.replace(crt, tmp_path / "server.crt")

            async def names() -> str:
                _, w = await asyncio.open_connection("127.0.0.1", amb.port, ssl=ctx)
                w.close()
                return _cn(w)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while await names() != "second":
                assert loop.time() < deadline, "new certificate not used"
                await asyncio.sleep(0.05)
            writer.write(b"still here\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(11) == b"still here\n"
        finally:
            writer.close()


def _cn(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert")
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def test_impossible_listener_tls_settings_are_config_errors(tmp_path: Path, ca: trustme.CA) -> None:
    """A certificate without its key, a client CA without a certificate, a key that is not
    the certificate's, or TLS on a redis listener are refused, each named."""
    crt, key = write_leaf(ca.issue_cert("app.example"), tmp_path, "app")
    base = {"AMBASSADOR_UPSTREAMS": "127.0.0.1:1"}
    cases = [
        ({"AMBASSADOR_LISTEN_TLS_CERT_FILE": crt}, "AMBASSADOR_LISTEN_TLS_KEY_FILE"),
        ({"AMBASSADOR_LISTEN_TLS_CLIENT_CA_FILE": crt}, "AMBASSADOR_LISTEN_TLS_CERT_FILE is not"),
        ({"AMBASSADOR_LISTEN_TLS_CERT_FILE": key, "AMBASSADOR_LISTEN_TLS_KEY_FILE": key}, "PEM"),
        ({"AMBASSADOR_LISTEN_TLS_CERT_FILE": crt, "AMBASSADOR_LISTEN_TLS_KEY_FILE": key,
          "AMBASSADOR_MODE": "redis"}, "tcp and http mode only"),
    ]  # fmt: skip
    for env, named in cases:
        config = SIDECAR.load_config([], {**base, **env})
        with pytest.raises(ValueError, match=named):
            from_settings(config)


async def test_process_terminates_tls_on_its_loop_and_exits_2_on_a_lone_key(
    tmp_path: Path, ca: trustme.CA, echo_port: int
) -> None:
    """`python -m sidecars.ambassador` (uvloop when installed) terminates TLS in tcp mode for
    connection after connection (none stalls: a ClientHello uvloop read before the handshake
    began reaches the TLS layer); a key without its certificate is exit 2 with one line."""
    env = term_env(tmp_path, ca.issue_cert("127.0.0.1"), echo_port)
    lone = {"AMBASSADOR_ADMIN_ADDR": "127.0.0.1:0", **env, "AMBASSADOR_LISTEN_TLS_CERT_FILE": ""}
    done = await asyncio.to_thread(run_sidecar, "ambassador", env=lone)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    port, admin = free_port(), free_port()
    env.update(AMBASSADOR_LISTEN=f"127.0.0.1:{port}", AMBASSADOR_ADMIN_ADDR=f"127.0.0.1:{admin}")
    with SidecarProcess("ambassador", env) as proc:
        await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{admin}/readyz")
        assert await asyncio.to_thread(hello_at_once, port, client_ctx(ca), 40) == 40
        other = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        code, _ = await run("curl", "-s", "--cacert", str(other), f"https://127.0.0.1:{port}/")
        assert code == 60
        await wait_for_count(admin, "client_refused", 1)


async def test_a_reload_turns_tls_on_the_listener_on_for_new_connections_only(
    tmp_path: Path, ca: trustme.CA, echo_port: int
) -> None:
    """A config file reload that gives a plain listener a certificate and key makes new
    connections speak TLS; a plain connection opened before keeps relaying."""
    crt, key = write_leaf(ca.issue_cert("127.0.0.1"), tmp_path, "server")
    port, conf = free_port(), tmp_path / "amb.json"
    listener = {
        "listen": f"127.0.0.1:{port}",
        "upstreams": [f"127.0.0.1:{echo_port}"],
        "health_check": "none",
    }
    conf.write_text(json.dumps({"listeners": {"echo": listener}}))
    env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"plain\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(6) == b"plain\n"
            listener.update(listen_tls_cert_file=crt, listen_tls_key_file=key)
            conf.write_text(json.dumps({"listeners": {"echo": listener}}))
            registry = amb.runtime.registry
            await wait_for(
                lambda: registry.get_sample_value(
                    "ambassador_config_reloads_total", {"outcome": "success"}
                ) == 1,
                10,
                "config reloaded",
            )  # fmt: skip
            assert await tls_echo(port, client_ctx(ca), b"tls now\n") == b"tls now\n"
            writer.write(b"still plain\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(12) == b"still plain\n"
        finally:
            writer.close()
