"""The ambassador bench pins the proxies to one CPU and the load and backends to the other, and
runs unpinned, saying so in one line, when asked to or when the two CPUs are not there."""

from __future__ import annotations

import pytest

import bench.ambassador as amb

pytestmark = pytest.mark.unit


def test_commands_are_pinned_only_while_pinning_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """With pinning on a command runs under taskset on its CPU; with it off, or with no CPU
    given (a member left where it is), the command is run as it is."""
    monkeypatch.setattr(amb, "PINNING", True)
    assert amb.pinned(amb.LOAD_CPU, ["wrk"]) == ["taskset", "-c", amb.LOAD_CPU, "wrk"]
    assert amb.pinned(None, ["nginx"]) == ["nginx"]
    monkeypatch.setattr(amb, "PINNING", False)
    assert amb.pinned(amb.PROXY_CPU, ["haproxy"]) == ["haproxy"]


def test_two_cpus_pin_unless_told_not_to(capsys: pytest.CaptureFixture[str]) -> None:
    """With CPUs 0 and 1 usable the bench pins, and `--no-pin` turns it off, silently."""
    assert amb.pinning_on(no_pin=False, cpus={0, 1, 2}) is True
    assert amb.pinning_on(no_pin=True, cpus={0, 1}) is False
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("cpus", [{0}, {1, 2}], ids=["one CPU", "CPU 0 not usable"])
def test_without_both_cpus_it_runs_unpinned_and_says_so(
    cpus: set[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without both CPUs usable taskset would fail: the bench runs unpinned and prints one line
    naming the CPUs it has."""
    assert amb.pinning_on(no_pin=False, cpus=cpus) is False
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].endswith("unpinned")
    assert ", ".join(str(c) for c in sorted(cpus)) in lines[0]
