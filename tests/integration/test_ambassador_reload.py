"""Discovery and reload: watched member files, DNS, config file reloads that keep connections."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.ambassador_support import RedisServer, ambassador, backends, redis_command, wait_for
from tests.helpers import free_port
from tests.integration.test_ambassador_http_wire import read_responses

pytestmark = pytest.mark.integration


async def names(session: aiohttp.ClientSession, url: str, n: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        async with session.get(url) as resp:
            assert resp.status == 200
            out[await resp.text()] += 1
    return out


def counter_value(amb, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = amb.runtime.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_watched_member_file_is_reloaded_and_bad_content_refused(tmp_path: Path) -> None:
    members = tmp_path / "members"
    async with backends(2) as bs:
        members.write_text(f"# cluster\n{bs[0].addr}\n")
        env = {
            "AMBASSADOR_MODE": "http",
            "AMBASSADOR_UPSTREAMS": f"file://{members}",
            "AMBASSADOR_FILE_INTERVAL": "0.05s",
        }
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            assert await names(s, amb.url, 4) == {"b0": 4}
            cluster = amb.service.running["default"].cluster
            tmp = tmp_path / "members.new"  # replaced atomically, as a ConfigMap update does
            tmp.write_text(f"{bs[0].addr}\n{bs[1].addr}*3\n")
            tmp.replace(members)
            await wait_for(lambda: len(cluster.members) == 2, 10, "second member loaded")
            assert await names(s, amb.url, 8) == {"b0": 2, "b1": 6}
            members.write_text("this is not a member list\n")
            labels = {"listener": "default", "kind": "file", "outcome": "error"}
            await wait_for(
                lambda: counter_value(amb, "ambassador_discovery_total", **labels) >= 1,
                10,
                "bad member file counted",
            )
            assert len(cluster.members) == 2  # the previous members stay
            assert set(await names(s, amb.url, 4)) == {"b0", "b1"}


async def test_dns_names_resolve_and_failures_keep_the_listener_up() -> None:
    async with backends(1) as bs:
        env = {
            "AMBASSADOR_MODE": "http",
            "AMBASSADOR_UPSTREAMS": f"dns://localhost:{bs[0].port},dns://nonexistent.invalid:80",
            "AMBASSADOR_DNS_FAMILY": "ipv4",
            "AMBASSADOR_DNS_INTERVAL": "0.1s",
        }
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            cluster = amb.service.running["default"].cluster
            assert list(cluster.members) == [bs[0].addr]
            assert cluster.members[bs[0].addr].source == f"dns://localhost:{bs[0].port}"
            assert await names(s, amb.url, 3) == {"b0": 3}
            labels = {"listener": "default", "kind": "dns"}
            await wait_for(
                lambda: (
                    counter_value(amb, "ambassador_discovery_total", **labels, outcome="error") >= 3
                    and counter_value(
                        amb, "ambassador_discovery_total", **labels, outcome="success"
                    )
                    >= 3
                ),
                10,
                "re-resolution running",
            )
            assert list(cluster.members) == [bs[0].addr]
            await wait_for(lambda: amb.runtime.readiness.ready, 5, "ready")


async def test_unresolvable_only_member_means_not_ready() -> None:
    env = {
        "AMBASSADOR_UPSTREAMS": "dns://nonexistent.invalid:6379",
        "AMBASSADOR_DNS_INTERVAL": "1s",
    }
    async with ambassador(env) as amb:
        await wait_for(
            lambda: amb.runtime.readiness.reason == "no healthy member in any cluster", 5, "reason"
        )
        assert not amb.runtime.readiness.ready


def write_config(path: Path, listeners: dict[str, dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"listeners": listeners}))
    tmp.replace(path)


async def test_config_file_reload_keeps_open_connections_and_refuses_bad_files(
    tmp_path: Path,
) -> None:
    redis = RedisServer()
    try:
        await redis.ready()
        async with backends(2) as bs:
            conf = tmp_path / "ambassador.json"
            tcp_port, http_port, new_port = free_port(), free_port(), free_port()
            write_config(
                conf,
                {
                    "redis": {
                        "listen": f"127.0.0.1:{tcp_port}",
                        "upstreams": [f"127.0.0.1:{redis.port}"],
                    },
                    "api": {
                        "listen": f"127.0.0.1:{http_port}",
                        "mode": "http",
                        "upstreams": [bs[0].addr],
                    },
                },
            )
            env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
            async with ambassador(env) as amb, aiohttp.ClientSession() as s:
                assert set(amb.service.running) == {"redis", "api"}
                api = f"http://127.0.0.1:{http_port}/"
                assert await names(s, api, 2) == {"b0": 2}
                # an open Redis session must survive the reload
                reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                assert await reader.readline() == b"+PONG\r\n"

                write_config(
                    conf,
                    {
                        "redis": {
                            "listen": f"127.0.0.1:{tcp_port}",
                            "upstreams": [f"127.0.0.1:{redis.port}"],
                            "policy": "least_conn",
                        },
                        "api": {
                            "listen": f"127.0.0.1:{http_port}",
                            "mode": "http",
                            "upstreams": [bs[1].addr],
                        },
                        "api2": {
                            "listen": f"127.0.0.1:{new_port}",
                            "mode": "http",
                            "upstreams": [bs[0].addr],
                        },
                    },
                )
                ok = {"outcome": "success"}
                await wait_for(
                    lambda: counter_value(amb, "ambassador_config_reloads_total", **ok) == 1,
                    10,
                    "reload applied",
                )
                assert set(amb.service.running) == {"redis", "api", "api2"}
                assert await names(s, api, 2) == {"b1": 2}
                assert await names(s, f"http://127.0.0.1:{new_port}/", 1) == {"b0": 1}
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                assert await reader.readline() == b"+PONG\r\n"

                conf.write_text('{"listeners": {"api": {"upstreams": ["bad:port"]}}}')
                bad = {"outcome": "error"}
                await wait_for(
                    lambda: counter_value(amb, "ambassador_config_reloads_total", **bad) == 1,
                    10,
                    "bad reload refused",
                )
                assert set(amb.service.running) == {"redis", "api", "api2"}
                assert await names(s, api, 1) == {"b1": 1}
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                assert await reader.readline() == b"+PONG\r\n"
                writer.close()

                # a listener removed from the file stops accepting
                write_config(
                    conf,
                    {
                        "api": {
                            "listen": f"127.0.0.1:{http_port}",
                            "mode": "http",
                            "upstreams": [bs[1].addr],
                        }
                    },
                )
                await wait_for(lambda: set(amb.service.running) == {"api"}, 10, "listeners gone")
                with pytest.raises(OSError):
                    await redis_command(tcp_port, b"PING")
    finally:
        redis.stop()


def http_listener(port: int, member: str) -> dict[str, object]:
    """A config file's http listener on `port` with one member."""
    return {"listen": f"127.0.0.1:{port}", "mode": "http", "upstreams": [member]}


async def reload_applied(amb) -> None:  # type: ignore[no-untyped-def]
    """Wait until the first reload of the config file has succeeded."""
    ok = {"outcome": "success"}
    await wait_for(
        lambda: counter_value(amb, "ambassador_config_reloads_total", **ok) == 1,
        10,
        "reload applied",
    )


async def test_a_reload_applies_new_head_limits_to_a_head_repeated_on_an_open_connection(
    tmp_path: Path,
) -> None:
    """A keep-alive connection that repeats the same request head (kept parsed by the
    connection) gets the new max_header_size after a reload: the head within the old limit
    but over the new one is answered 431, not forwarded."""
    async with backends(1) as bs:
        conf = tmp_path / "ambassador.json"
        port = free_port()
        listener = http_listener(port, bs[0].addr)
        write_config(conf, {"api": {**listener, "max_header_size": "16KiB"}})
        env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
        request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: %s\r\n\r\n" % (b"p" * 1500)
        async with ambassador(env) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(10):
                for _ in range(2):
                    writer.write(request)
                    assert (await read_responses(reader, 1))[0] == (b"HTTP/1.1 200 OK", b"b0")
            write_config(conf, {"api": {**listener, "max_header_size": "1KiB"}})
            await reload_applied(amb)
            writer.write(request)
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 431 ")
            writer.close()
        assert len(bs[0].seen) == 2


async def test_a_reload_applies_the_new_request_timeout_and_retries(tmp_path: Path) -> None:
    """The settings each request reads (kept by the listener as its own attributes) follow a
    reload: with request_timeout 30s a member's 3 s answer passes, after a reload to 0.3s
    with no retries the same request is answered 504 in well under the 3 s."""
    async with backends(1) as bs:
        conf = tmp_path / "ambassador.json"
        port = free_port()
        listener = http_listener(port, bs[0].addr)
        write_config(conf, {"api": {**listener, "request_timeout": "30s", "retries": 2}})
        env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
        url = f"http://127.0.0.1:{port}/slow?s=3"
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            async with asyncio.timeout(10), s.get(url) as resp:
                assert resp.status == 200
            write_config(conf, {"api": {**listener, "request_timeout": "0.3s", "retries": 0}})
            await reload_applied(amb)
            cluster = amb.service.running["api"].listener.cluster
            retried = cluster.retries
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(10), s.get(url) as resp:
                assert resp.status == 504
            assert asyncio.get_running_loop().time() - started < 2.5
            assert cluster.retries == retried  # one attempt: no retry after the reload


async def test_a_tcp_reload_applies_the_new_retries_and_max_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings each tcp connection reads (kept by the listener as its own attributes)
    follow a reload. Members: one refusing, one echoing. With retries 2 every client is relayed
    (a refused connect is retried on the other); after a reload to retries 0 and
    max_connections 1, a client sent to the refusing member is closed without a retry, and
    while one client is open a second one is refused."""
    monkeypatch.setattr("sidecars.ambassador.listener.EVICT_IDLE_AFTER", 3600.0)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    good = await asyncio.start_server(echo, "127.0.0.1", 0)
    conf = tmp_path / "ambassador.json"
    port = free_port()
    listener: dict[str, object] = {
        "listen": f"127.0.0.1:{port}",
        "mode": "tcp",
        "upstreams": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{good.sockets[0].getsockname()[1]}"],
        "health_check": "none",
        "eject_failures": 1000,  # the refusing member stays in the rotation
    }

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        try:
            async with asyncio.timeout(5):
                return await reader.read(100)
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    write_config(conf, {"t": {**listener, "retries": 2, "max_connections": 10}})
    env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
    try:
        async with ambassador(env) as amb:
            assert [await exchange() for _ in range(4)] == [b"ping"] * 4
            write_config(conf, {"t": {**listener, "retries": 0, "max_connections": 1}})
            ok = {"outcome": "success"}
            await wait_for(
                lambda: counter_value(amb, "ambassador_config_reloads_total", **ok) == 1,
                10,
                "reload applied",
            )
            running = amb.service.running["t"].listener
            cluster = running.cluster
            retried = cluster.retries
            answers = []
            for _ in range(4):  # round robin: two on each member
                answers.append(await exchange())
                await wait_for(lambda: not running.conns, 5, "the client released")
            assert answers.count(b"") == 2 and answers.count(b"ping") == 2, answers
            assert cluster.retries == retried
            # at most one client: a second one is refused while the first is open
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x")
            async with asyncio.timeout(5):
                if await reader.read(1) != b"x":  # sent to the refusing member: once more
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(b"x")
                    assert await reader.read(1) == b"x"
            rejected = running.metrics.rejected
            before = rejected.labels("t", "max_connections").value
            assert await exchange() == b""
            assert rejected.labels("t", "max_connections").value == before + 1
            writer.close()
    finally:
        good.close()
