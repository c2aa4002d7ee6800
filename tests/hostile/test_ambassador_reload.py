"""Hostile config files on reload: a file that cannot be applied in full is refused as a whole,
in one log line, counted, and the running config keeps serving. At start the same files are
config errors: exit 2 with one line per problem."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ambassador_support import ambassador, backends
from tests.helpers import free_port, run_sidecar

pytestmark = pytest.mark.integration


def listener(port: int, member: str, **extra: str) -> str:
    lines = [f"    listen: 127.0.0.1:{port}", "    mode: http", f"    upstreams: [{member}]"]
    return "\n".join(lines + [f"    {k}: {v}" for k, v in extra.items()]) + "\n"


def alias_bomb(member: str) -> str:
    """Nine levels of nine aliases each: 9**9 strings once expanded, in 900 bytes."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nlisteners:\n  api:\n    upstreams: [{member}]\n    mode: *l9\n"


BAD: dict[str, tuple[Callable[[int, str], str], str]] = {
    "bad value": (
        lambda port, m: "listeners:\n  api:\n" + listener(port, m, policy="fastest"),
        "policy",
    ),
    "huge": (lambda port, m: "#" + "x" * (2 << 20) + "\n", "larger than 1 MiB"),
    "deeply nested": (lambda port, m: "listeners: " + "[" * 50_000 + "]" * 50_000, "nested deeper"),
    "alias bomb": (lambda port, m: alias_bomb(m), "aliases"),
    "top level list": (lambda port, m: "- listeners\n- api\n", "expected a mapping"),
    "top level scalar": (lambda port, m: "just words\n", "expected a mapping"),
    "listeners a list": (lambda port, m: "listeners: [api, web]\n", "expected a mapping"),
    "setting a mapping": (
        lambda port, m: "listeners:\n  api:\n" + listener(port, m) + "    policy: {a: b}\n",
        "expected a value",
    ),
    "missing member file": (
        lambda port, m: "listeners:\n  api:\n" + listener(port, "file:///nonexistent/members"),
        "file:///nonexistent/members",
    ),
}


def problem_lines(stderr: str) -> list[str]:
    """What a start refused prints besides its JSON log lines (the settings it read)."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]


async def served(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_file_on_reload_is_refused_and_the_old_config_serves(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each file is refused within 5 s in one log line naming the problem, counted as an
    error reload, and the running listener still answers through its member."""
    make, reason = BAD[case]
    conf = tmp_path / "ambassador.yaml"
    port = free_port()
    async with backends(1) as bs:
        conf.write_text("listeners:\n  api:\n" + listener(port, bs[0].addr))
        env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "1h"}
        async with ambassador(env) as amb:
            assert (await served(port)).endswith(b"b0")
            conf.write_text(make(port, bs[0].addr))
            caplog.set_level(logging.INFO)
            async with asyncio.timeout(5):
                assert await amb.service.reload() is False
            lines = refusals(caplog)
            assert len(lines) == 1 and reason in lines[0] and len(lines[0]) < 8000, lines
            errors = amb.runtime.registry.get_sample_value(
                "ambassador_config_reloads_total", {"outcome": "error"}
            )
            assert errors == 1
            assert set(amb.service.running) == {"api"}
            assert (await served(port)).endswith(b"b0")


async def test_reload_with_an_address_in_use_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload that moves one listener, adds a second and adds a third on an address in use is
    refused as a whole: the first stays where it was, the second is not started (its address
    stays free), and one log line names the address in use."""
    conf = tmp_path / "ambassador.yaml"
    port, moved, added = free_port(), free_port(), free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    try:
        async with backends(1) as bs:
            member = bs[0].addr
            conf.write_text("listeners:\n  api:\n" + listener(port, member))
            env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "1h"}
            async with ambassador(env) as amb:
                conf.write_text(
                    "listeners:\n  api:\n" + listener(moved, member)
                    + "  added:\n" + listener(added, member)
                    + "  clash:\n" + listener(busy, member)
                )  # fmt: skip
                caplog.set_level(logging.INFO)
                assert await amb.service.reload() is False
                lines = refusals(caplog)
                assert len(lines) == 1 and f"127.0.0.1:{busy}" in lines[0], lines
                assert set(amb.service.running) == {"api"}
                assert (await served(port)).endswith(b"b0")
                for free in (moved, added):
                    with socket.socket() as probe:
                        probe.bind(("127.0.0.1", free))  # nobody listens there
    finally:
        taken.close()


async def test_reload_that_swaps_two_addresses_is_applied(tmp_path: Path) -> None:
    """Two listeners that trade addresses in one reload: both addresses serve again, each
    with the other's members (an address a leaving listener holds is taken over)."""
    conf = tmp_path / "ambassador.yaml"
    one, two = free_port(), free_port()
    async with backends(2) as bs:
        a, b = bs[0].addr, bs[1].addr
        conf.write_text(f"listeners:\n  x:\n{listener(one, a)}  y:\n{listener(two, b)}")
        env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "1h"}
        async with ambassador(env) as amb:
            assert (await served(one)).endswith(b"b0")
            conf.write_text(f"listeners:\n  x:\n{listener(two, a)}  y:\n{listener(one, b)}")
            assert await amb.service.reload() is True
            assert (await served(one)).endswith(b"b1")
            assert (await served(two)).endswith(b"b0")


@pytest.mark.parametrize("case", ["huge", "deeply nested", "alias bomb", "missing member file"])
def test_bad_file_at_start_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    """The same files at start: exit 2 and one line naming the problem."""
    make, reason = BAD[case]
    conf = tmp_path / "ambassador.yaml"
    conf.write_text(make(free_port(), f"127.0.0.1:{free_port()}"))
    env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{free_port()}"}
    result = run_sidecar("ambassador", env=env)
    assert result.returncode == 2, result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 1 and reason in lines[0], lines


def test_missing_member_file_at_start_exits_2() -> None:
    """AMBASSADOR_UPSTREAMS=file://... naming no file: exit 2 with one line."""
    env = {
        "AMBASSADOR_UPSTREAMS": "file:///nonexistent/members",
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
    }
    result = run_sidecar("ambassador", env=env)
    assert result.returncode == 2, result.stderr
    lines = problem_lines(result.stderr)
    assert len(lines) == 1 and "file:///nonexistent/members" in lines[0], lines
