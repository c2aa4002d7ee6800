"""tcp mode: bulk connections move to splice(2) with order, half-close and resets kept."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct

import pytest

from sidecars.ambassador import splice
from sidecars.ambassador.tcp import SPLICE_AFTER, Relay
from tests.ambassador_support import Running, ambassador, wait_for
from tests.helpers import SidecarProcess, free_port, http_get

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not splice.AVAILABLE, reason="splice(2) is Linux only"),
]

PAYLOAD = bytes(range(256)) * (32 * 1024)  # 8 MiB, far past the switch to splice


async def echo_then_digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo every byte as it comes; after the client's EOF, answer its digest and close."""
    digest = hashlib.sha256()
    while data := await reader.read(65536):
        digest.update(data)
        writer.write(data)
        await writer.drain()
    writer.write(b"END " + digest.hexdigest().encode())
    await writer.drain()
    writer.close()


def relays(amb: Running) -> list[Relay]:
    conns = amb.service.running["default"].listener.conns
    return [c for c in conns if isinstance(c, Relay)]


async def send_payload(writer: asyncio.StreamWriter) -> None:
    """Write PAYLOAD in 64 KiB pieces, then half-close (the member answers after our EOF)."""
    for i in range(0, len(PAYLOAD), 65536):
        writer.write(PAYLOAD[i : i + 65536])
        await writer.drain()
    writer.write_eof()


async def test_bulk_stream_is_spliced_in_order_and_half_close_is_passed_on() -> None:
    server = await asyncio.start_server(echo_then_digest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {"AMBASSADOR_MODE": "tcp", "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}"}
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)

        sender = asyncio.create_task(send_payload(writer))
        async with asyncio.timeout(60):
            got = await reader.readexactly(len(PAYLOAD) // 2)
            spliced = [r.splicer is not None for r in relays(amb)]
            got += await reader.read(-1)
            await sender
        writer.close()
        assert spliced == [True]
        assert got == PAYLOAD + b"END " + hashlib.sha256(PAYLOAD).hexdigest().encode()
        await wait_for(lambda: not relays(amb), 5, "relay closed")
    server.close()


async def test_member_reset_mid_splice_cuts_the_client_and_counts() -> None:
    async def reset_after_bulk(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen = 0
        while seen < 4 * SPLICE_AFTER:
            data = await reader.read(65536)
            if not data:
                break
            seen += len(data)
            w.write(data)
            await w.drain()
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()  # close with linger 0: the ambassador gets a reset

    server = await asyncio.start_server(reset_after_bulk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {"AMBASSADOR_MODE": "tcp", "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}"}
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)

        async def send() -> None:
            try:
                for i in range(0, len(PAYLOAD), 65536):
                    writer.write(PAYLOAD[i : i + 65536])
                    await writer.drain()
            except ConnectionError:
                pass  # cut off by the ambassador, as expected

        sender = asyncio.create_task(send())
        got = 0
        async with asyncio.timeout(30):
            try:
                while data := await reader.read(65536):
                    got += len(data)
            except ConnectionError:
                pass
            await sender
        writer.close()
        assert got < len(PAYLOAD)  # the client saw the connection end early, no hang
        member = next(iter(amb.service.running["default"].cluster.members.values()))
        await wait_for(lambda: not relays(amb), 5, "relay closed")
        assert member.errors["reset"] >= 1
    server.close()


def test_spliced_stream_under_uvloop_in_the_real_process() -> None:
    """The entry point runs on uvloop, whose transports hand over their sockets differently."""

    async def scenario() -> None:
        server = await asyncio.start_server(echo_then_digest, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        listen, admin = free_port(), free_port()
        env = {
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}",
            "AMBASSADOR_LISTEN": f"127.0.0.1:{listen}",
            "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        }
        with SidecarProcess("ambassador", env) as proc:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{admin}/readyz")
            reader, writer = await asyncio.open_connection("127.0.0.1", listen)

            sender = asyncio.create_task(send_payload(writer))
            async with asyncio.timeout(60):
                got = await reader.read(-1)
                await sender
            writer.close()
            assert got == PAYLOAD + b"END " + hashlib.sha256(PAYLOAD).hexdigest().encode()
            _, metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{admin}/metrics")
            assert b'ambassador_spliced_connections_total{listener="default"} 1.0' in metrics
            assert await asyncio.to_thread(proc.terminate) == 0
            assert not [x for x in proc.log_lines() if x["level"] == "error"]
        server.close()

    asyncio.run(scenario())


async def test_no_descriptors_for_pipes_keeps_the_connection_relaying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pipes(flags: int) -> tuple[int, int]:
        raise OSError(24, "Too many open files")

    server = await asyncio.start_server(echo_then_digest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {"AMBASSADOR_MODE": "tcp", "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}"}
    async with ambassador(env) as amb:
        # A fake fault: running out of descriptors exactly at the switch cannot be arranged
        # with real servers without starving the test process itself.
        monkeypatch.setattr(splice.os, "pipe2", no_pipes)
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)

        sender = asyncio.create_task(send_payload(writer))
        async with asyncio.timeout(60):
            got = await reader.readexactly(len(PAYLOAD) // 2)
            states = [(r.splicer, r.no_splice) for r in relays(amb)]
            got += await reader.read(-1)
            await sender
        writer.close()
        assert states == [(None, True)]  # tried once, then relayed as before
        assert got == PAYLOAD + b"END " + hashlib.sha256(PAYLOAD).hexdigest().encode()
    server.close()
