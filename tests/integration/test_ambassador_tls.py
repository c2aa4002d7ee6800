"""TLS origination: the app speaks plain text to the ambassador, the ambassador speaks TLS to
real TLS members (a Python echo server, redis-server, nginx) with certificates made here."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from sidecars.ambassador.service import SIDECAR
from sidecars.ambassador.spec import from_settings
from tests.ambassador_support import ambassador, metric_value, redis_command, wait_for
from tests.helpers import SidecarProcess, free_port, run_sidecar
from tests.tls_support import EchoServer, Nginx, TlsRedis, expired, write_leaf

pytestmark = pytest.mark.integration


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def tls_env(tmp_path: Path, ca: trustme.CA, *ports: int, **extra: str) -> dict[str, str]:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem.bytes())
    env = {
        "AMBASSADOR_MODE": "tcp",
        "AMBASSADOR_UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in ports),
        "AMBASSADOR_TLS": "true",
        "AMBASSADOR_TLS_CA_FILE": str(bundle),
        "AMBASSADOR_HEALTH_CHECK": "none",
    }
    env.update({f"AMBASSADOR_{k.upper()}": v for k, v in extra.items()})
    return env


async def echo(port: int, data: bytes, within: float = 10.0) -> bytes:
    """Send `data` on a new connection and read as much back (b"" when the connection is cut)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(within):
            try:
                return await reader.readexactly(len(data))
            except asyncio.IncompleteReadError as exc:
                return exc.partial
            except ConnectionResetError:
                return b""
    finally:
        writer.close()


async def admin_get(port: int, path: str) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}{path}") as resp:
            return await (resp.json() if path == "/upstreams" else resp.text())


def member_tls(upstreams: Any, port: int) -> dict[str, Any]:
    for listener in upstreams["listeners"] if "listeners" in upstreams else upstreams:
        for member in listener["members"]:
            if member["address"] == f"127.0.0.1:{port}":
                return dict(member.get("tls", {}), healthy=member["healthy"])
    raise AssertionError(f"no member 127.0.0.1:{port} in {upstreams}")


@pytest.fixture
async def servers() -> AsyncIterator[list[EchoServer]]:
    started: list[EchoServer] = []
    try:
        yield started
    finally:
        for s in started:
            await s.stop()


async def test_tcp_relays_plain_bytes_over_tls_and_resumes_sessions(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer]
) -> None:
    """The app's plain bytes reach a TLS member and come back; handshakes are counted and a
    later connection resumes the session of an earlier one."""
    servers.append(await EchoServer(ca.issue_cert("127.0.0.1")).start())
    async with ambassador(tls_env(tmp_path, ca, servers[0].port)) as amb:
        assert await echo(amb.port, b"hello over tls\n") == b"hello over tls\n"
        big = os.urandom(2 * 1024 * 1024)  # beyond the splice threshold: stays in user space
        assert await echo(amb.port, big, within=30) == big
        assert await echo(amb.port, b"again\n") == b"again\n"
        tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), servers[0].port)
        assert tls["ok"] and tls["handshakes"] == 3 and tls["resumed"] >= 1, tls
        text = await admin_get(amb.admin_port, "/metrics")
        assert metric_value(text, "ambassador_spliced_connections_total", listener="default") == 0


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_every_later_connection_resumes_also_after_the_member_forgets(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer], version: ssl.TLSVersion
) -> None:
    """Sessions are kept without taking every connection's (that costs): each connection after
    the first resumes, with TLS 1.2 (the session comes with the handshake) and TLS 1.3 (its
    ticket comes later). A member started again (new ticket keys) costs one full handshake,
    then its new session resumes again."""
    cert = ca.issue_cert("127.0.0.1")
    servers.append(await EchoServer(cert, max_version=version).start())
    port = servers[0].port
    async with ambassador(tls_env(tmp_path, ca, port)) as amb:

        async def counts() -> tuple[int, int]:
            tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), port)
            return tls["handshakes"], tls["resumed"]

        for i in range(5):
            assert await echo(amb.port, b"%d\n" % i) == b"%d\n" % i
        assert await counts() == (5, 4)
        await servers.pop().stop()
        servers.append(await EchoServer(cert, port=port, max_version=version).start())
        for i in range(3):
            assert await echo(amb.port, b"%d\n" % i) == b"%d\n" % i
        assert await counts() == (8, 6)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [("untrusted", "verify_failed"), ("expired", "expired"), ("wrong_name", "wrong_name")],
)
async def test_bad_member_certificates_are_refused_with_their_reason(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer], shape: str, reason: str
) -> None:
    """A member whose certificate is untrusted, expired or for another name is never sent the
    app's bytes: the connection is cut, the failure is counted with its reason, /upstreams
    shows it, and the tcp health check (which does the handshake) marks it down."""
    cert = {
        "untrusted": lambda: trustme.CA().issue_cert("127.0.0.1"),
        "expired": lambda: expired(ca, "127.0.0.1"),
        "wrong_name": lambda: ca.issue_cert("other.example"),
    }[shape]()
    servers.append(await EchoServer(cert).start())
    port = servers[0].port
    env = tls_env(tmp_path, ca, port, health_check="tcp", health_interval="0.1s")
    async with ambassador(env) as amb:
        assert await echo(amb.port, b"secret\n") == b""
        text = await admin_get(amb.admin_port, "/metrics")
        labels = {"listener": "default", "member": f"127.0.0.1:{port}", "reason": reason}
        name = "ambassador_upstream_tls_handshake_failures_total"
        assert metric_value(text, name, **labels) >= 1
        await wait_for(lambda: not next(iter(amb.service.running.values())).cluster.available(),
                       10.0, "member marked down by the tls health check")  # fmt: skip
        tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), port)
        assert not tls["ok"] and tls["error"].startswith(reason) and not tls["healthy"]
    assert servers[0].clients == []  # no connection got past the handshake


async def test_client_certificate_required_by_the_member(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer]
) -> None:
    """A member that requires a client certificate (mTLS) is reached with the cert and key
    settings and refuses the connection without them."""
    servers.append(await EchoServer(ca.issue_cert("127.0.0.1"), client_ca=ca).start())
    port = servers[0].port
    crt, key = write_leaf(ca.issue_cert("app.example", common_name="app-1"), tmp_path, "app")
    async with ambassador(tls_env(tmp_path, ca, port, tls_min_version="1.3")) as amb:
        assert await echo(amb.port, b"ping\n") == b""
    env = tls_env(tmp_path, ca, port, tls_cert_file=crt, tls_key_file=key)
    async with ambassador(env) as amb:
        assert await echo(amb.port, b"ping\n") == b"ping\n"
    assert servers[0].clients == ["app-1"]


async def test_rotated_client_certificate_is_used_by_new_connections_only(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer]
) -> None:
    """When the certificate and key files are replaced (as cert-manager does), the next
    connection shows the new certificate while an open one stays up and keeps relaying."""
    servers.append(await EchoServer(ca.issue_cert("127.0.0.1"), client_ca=ca).start())
    port = servers[0].port
    crt, key = write_leaf(ca.issue_cert("app.example", common_name="first"), tmp_path, "app")
    env = tls_env(tmp_path, ca, port, tls_cert_file=crt, tls_key_file=key, file_interval="0.05s")
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        try:
            writer.write(b"one\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(4) == b"one\n"
            # replaced as a whole, each file renamed into place
            write_leaf(ca.issue_cert("app.example", common_name="second"), tmp_path, "next")
            os.replace(tmp_path / "next.key", key)
            os.replace(tmp_path / "next.crt", crt)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "second" not in servers[0].clients:
                assert loop.time() < deadline, f"new certificate not used: {servers[0].clients}"
                assert await echo(amb.port, b"two\n") == b"two\n"
                await asyncio.sleep(0.05)
            writer.write(b"still\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(6) == b"still\n"
        finally:
            writer.close()
    assert servers[0].clients[0] == "first"


async def test_redis_with_tls_through_the_ambassador(tmp_path: Path, ca: trustme.CA) -> None:
    """Debian's redis-server with only a TLS port answers the app's plain RESP commands."""
    crt, key = write_leaf(ca.issue_cert("localhost"), tmp_path, "redis")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    redis = TlsRedis(crt, key, str(tmp_path / "ca.pem"))
    try:
        await redis.ready()
        env = tls_env(tmp_path, ca, redis.port, tls_server_name="localhost")
        async with ambassador(env) as amb:
            assert await redis_command(amb.port, b"SET", b"k", b"v") == b"+OK\r\n"
            assert await redis_command(amb.port, b"GET", b"k") == b"$1\r\n"
    finally:
        redis.stop()


async def test_http_mode_to_nginx_with_tls_resumes_sessions(tmp_path: Path, ca: trustme.CA) -> None:
    """http mode reaches nginx over TLS (with a client certificate it requires); without a
    keep-alive pool each request is a new connection, and later ones resume the session."""
    crt, key = write_leaf(ca.issue_cert("localhost"), tmp_path, "nginx")
    client_crt, client_key = write_leaf(ca.issue_cert("app.example"), tmp_path, "app")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    nginx = Nginx(tmp_path, crt, key, client_ca=str(tmp_path / "ca.pem"))
    try:
        await nginx.ready()
        env = tls_env(
            tmp_path, ca, nginx.port, mode="http", pool_size="0", tls_server_name="localhost",
            tls_cert_file=client_crt, tls_key_file=client_key, health_check="http:/",
        )  # fmt: skip
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            for _ in range(4):
                async with s.get(f"http://127.0.0.1:{amb.port}/x") as resp:
                    assert resp.status == 200 and await resp.text() == "nginx-tls\n"
            tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), nginx.port)
            assert tls["ok"] and tls["handshakes"] >= 2 and tls["resumed"] >= 1, tls
    finally:
        nginx.stop()


def test_impossible_tls_settings_are_config_errors(tmp_path: Path, ca: trustme.CA) -> None:
    """A certificate without its key, TLS files with TLS off, a file that is not PEM, or TLS in
    a mode that does not offer it are refused at start, each named."""
    crt, key = write_leaf(ca.issue_cert("app.example"), tmp_path, "app")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    base = {"AMBASSADOR_UPSTREAMS": "127.0.0.1:1"}
    cases = [
        ({"AMBASSADOR_TLS": "true", "AMBASSADOR_TLS_CERT_FILE": crt}, "AMBASSADOR_TLS_KEY_FILE"),
        ({"AMBASSADOR_TLS_CA_FILE": crt}, "AMBASSADOR_TLS is off"),
        ({"AMBASSADOR_TLS": "true", "AMBASSADOR_TLS_CA_FILE": str(tmp_path / "junk.pem")},
         "AMBASSADOR_TLS_CA_FILE"),
        ({"AMBASSADOR_TLS": "true", "AMBASSADOR_TLS_CERT_FILE": key,
          "AMBASSADOR_TLS_KEY_FILE": key}, "PEM"),
        ({"AMBASSADOR_TLS": "true", "AMBASSADOR_MODE": "redis"}, "tcp and http mode only"),
    ]  # fmt: skip
    for env, named in cases:
        config = SIDECAR.load_config([], {**base, **env})
        with pytest.raises(ValueError, match=named):
            from_settings(config)


async def test_process_speaks_tls_to_redis_and_exits_2_on_impossible_settings(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """`python -m sidecars.ambassador` (the runtime's event loop) relays to redis over TLS and
    verifies it; a certificate without its key is exit 2 with one line naming both."""
    crt, key = write_leaf(ca.issue_cert("localhost"), tmp_path, "redis")
    env = tls_env(tmp_path, ca, 1, tls_cert_file=crt)
    done = run_sidecar("ambassador", env={"AMBASSADOR_ADMIN_ADDR": "127.0.0.1:0", **env})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "AMBASSADOR_TLS_CERT_FILE and AMBASSADOR_TLS_KEY_FILE" in done.stderr
    redis = TlsRedis(crt, key, str(tmp_path / "ca.pem"))
    try:
        await redis.ready()
        port, admin = free_port(), free_port()
        env = tls_env(
            tmp_path, ca, redis.port, tls_server_name="localhost", health_check="tcp",
            listen=f"127.0.0.1:{port}", admin_addr=f"127.0.0.1:{admin}",
        )  # fmt: skip
        with SidecarProcess("ambassador", env) as proc:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{admin}/readyz")
            assert await redis_command(port, b"PING") == b"+PONG\r\n"
            text = await admin_get(admin, "/metrics")
            labels = {"listener": "default", "member": f"127.0.0.1:{redis.port}"}
            passed = "ambassador_upstream_tls_handshakes_total"
            assert metric_value(text, passed, resumed="false", **labels) >= 1
    finally:
        redis.stop()


async def test_http_mode_answers_502_for_a_member_with_a_wrong_name(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """In http mode a member whose certificate is for another name gets no request: the client
    gets 502, the failure is counted as wrong_name, and the http health check (made over TLS)
    keeps the member shown as failing verification in /upstreams."""
    crt, key = write_leaf(ca.issue_cert("other.example"), tmp_path, "nginx")
    nginx = Nginx(tmp_path, crt, key)
    try:
        await nginx.ready()
        env = tls_env(
            tmp_path, ca, nginx.port, mode="http", tls_server_name="localhost",
            health_check="http:/", health_interval="0.1s",
        )  # fmt: skip
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{amb.port}/x") as resp:
                assert resp.status == 502
            text = await admin_get(amb.admin_port, "/metrics")
            labels = {"listener": "default", "member": f"127.0.0.1:{nginx.port}"}
            name = "ambassador_upstream_tls_handshake_failures_total"
            assert metric_value(text, name, reason="wrong_name", **labels) >= 1
            cluster = next(iter(amb.service.running.values())).cluster
            await wait_for(lambda: not cluster.available(), 10.0, "member marked down")
            tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), nginx.port)
            assert not tls["ok"] and tls["error"].startswith("wrong_name"), tls
    finally:
        nginx.stop()


async def test_member_that_speaks_first_is_heard(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer]
) -> None:
    """A TLS member that sends a greeting as soon as the handshake ends (as SMTP and IMAP
    servers do) has it relayed to the client before the client sends anything, in the
    tests' event loop."""
    servers.append(await EchoServer(ca.issue_cert("127.0.0.1"), banner=b"220 ready\r\n").start())
    async with ambassador(tls_env(tmp_path, ca, servers[0].port)) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        try:
            async with asyncio.timeout(10):
                assert await reader.readexactly(11) == b"220 ready\r\n"
            writer.write(b"EHLO x\r\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(8) == b"EHLO x\r\n"
        finally:
            writer.close()


def test_config_file_listeners_have_their_own_tls(tmp_path: Path, ca: trustme.CA) -> None:
    """In a listener file each listener sets its own TLS keys; an impossible combination is
    named with its listener."""
    crt, key = write_leaf(ca.issue_cert("app.example"), tmp_path, "app")
    path = tmp_path / "amb.yaml"
    path.write_text(
        "listeners:\n"
        "  secure:\n    listen: 127.0.0.1:7001\n    upstreams: [10.0.0.1:6380]\n"
        f"    tls: true\n    tls_server_name: redis.example\n    tls_cert_file: {crt}\n"
        f"    tls_key_file: {key}\n"
        "  plain:\n    listen: 127.0.0.1:7002\n    upstreams: [10.0.0.2:6379]\n"
    )
    config = SIDECAR.load_config([], {"AMBASSADOR_CONFIG": str(path)})
    secure, plain = from_settings(config)
    assert secure.settings.tls and secure.settings.tls_server_name == "redis.example"
    assert not plain.settings.tls
    path.write_text(
        "listeners:\n  secure:\n    listen: 127.0.0.1:7001\n    upstreams: [10.0.0.1:6380]\n"
        f"    tls_cert_file: {crt}\n"
    )
    with pytest.raises(ValueError, match=r"listeners\.secure\.tls_cert_file: set but .*tls is off"):
        from_settings(config)


async def test_reload_changes_tls_for_new_connections_only(
    tmp_path: Path, ca: trustme.CA, servers: list[EchoServer]
) -> None:
    """A config reload that changes a listener's TLS settings (here a server name the member's
    certificate does not carry) applies to new connections; an open one keeps relaying."""
    servers.append(await EchoServer(ca.issue_cert("127.0.0.1")).start())
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    port, conf = free_port(), tmp_path / "amb.json"
    listener = {
        "listen": f"127.0.0.1:{port}",
        "upstreams": [f"127.0.0.1:{servers[0].port}"],
        "tls": "true",
        "tls_ca_file": str(tmp_path / "ca.pem"),
        "health_check": "none",
    }
    conf.write_text(json.dumps({"listeners": {"echo": listener}}))
    env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"before\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(7) == b"before\n"
            listener["tls_server_name"] = "other.example"
            conf.write_text(json.dumps({"listeners": {"echo": listener}}))
            registry = amb.runtime.registry
            await wait_for(
                lambda: registry.get_sample_value(
                    "ambassador_config_reloads_total", {"outcome": "success"}
                ) == 1,
                10,
                "reload applied",
            )  # fmt: skip
            assert await echo(port, b"new\n") == b""
            writer.write(b"after\n")
            async with asyncio.timeout(10):
                assert await reader.readexactly(6) == b"after\n"
        finally:
            writer.close()
        member = amb.service.running["echo"].cluster.members[f"127.0.0.1:{servers[0].port}"]
        assert member.tls_failures["wrong_name"] >= 1
