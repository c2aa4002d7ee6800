"""The ambassador bench pins the proxies to one CPU and the load and backends to the other, and
runs unpinned, saying so in one line, when asked to or when the two CPUs are not there."""

from __future__ import annotations

import os
import subprocess
import sys

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


@pytest.mark.skipif(
    not {0, 1} <= os.sched_getaffinity(0), reason="needs CPUs 0 and 1 to move a process between"
)
def test_a_placement_moves_the_running_backends_and_the_commands_to_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switching the placement between the http peak rounds moves the running nginx backends
    (here a sleeping process) to the load's CPU and back to every CPU, and turns pinning of the
    commands started afterwards on and off with it."""
    monkeypatch.setattr(amb, "PINNING", True)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        amb.place("unpinned", proc.pid)
        assert os.sched_getaffinity(proc.pid) == os.sched_getaffinity(0)
        assert amb.pinned(amb.LOAD_CPU, ["wrk"]) == ["wrk"]
        amb.place("pinned", proc.pid)
        assert os.sched_getaffinity(proc.pid) == {int(amb.LOAD_CPU)}
        assert amb.pinned(amb.LOAD_CPU, ["wrk"])[:3] == ["taskset", "-c", amb.LOAD_CPU]
    finally:
        proc.kill()
        proc.wait()


def test_busy_counts_what_other_processes_took() -> None:
    """CPU busy shares come from /proc/stat; what the bench's own processes did not use is
    reported as the others' share (a CPU burner here, about a whole CPU), never below zero."""
    before = amb.cpu_ticks()
    assert {f"cpu{amb.PROXY_CPU}", f"cpu{amb.LOAD_CPU}"} <= set(before) or len(before) == 1
    burner = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()+0.6\nwhile time.time()<t: pass"]
    )
    burner.wait()
    cpu0, cpu1, others = amb.busy_since(before, ours=0.0)
    assert 0 <= cpu0 <= 100 and 0 <= cpu1 <= 100
    assert others > 30  # the burner, unclaimed, counted as others' load
    assert amb.busy_since(amb.cpu_ticks(), ours=1e6)[2] == 0.0
