"""Every parser against its fuzz target: the seed corpus in process (fast, bounded in time and
memory per input), then a bounded coverage-guided run per target: 20 s each in CI (CI=true;
less when there are more than 18 targets, so the run stays within 3 minutes), 3 s otherwise,
FUZZ_SECONDS to change it. `make fuzz` runs them for long."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.fuzz import runner, targets

JOBS = 2  # the targets run two at a time
CI_BUDGET = 180  # seconds the whole CI run may fuzz: more targets get less than 20 s each
_CI_SECONDS = max(5, min(20, CI_BUDGET * JOBS // len(targets.TARGETS)))
SECONDS = int(
    os.environ.get("FUZZ_SECONDS") or (_CI_SECONDS if os.environ.get("CI") == "true" else 3)
)
SEED_SECONDS = 2.0  # one seed input, in process
# The test suite fuzzes with a fixed libFuzzer seed, so that a run explores the same inputs
# each time (a new find fails `make fuzz`, which explores anew, not a random CI run);
# FUZZ_SEED changes it.
SEED = int(os.environ.get("FUZZ_SEED") or 1)
SEED_MEMORY = 64 << 20  # bytes one seed input may allocate at its peak


@pytest.mark.parametrize("name", targets.TARGETS)
def test_seeds_keep_the_contract(name: str) -> None:
    """Each seed (valid inputs, edge cases, and the reproducer of every bug found) passes the
    target's contract within a time and memory bound; reproducers of bugs still open in code
    another change owns are named `known-*` and are tolerated by the target until fixed."""
    target = targets.load(name)
    seeds = targets.seeds(name)
    assert seeds, f"no seed corpus for {name}"
    for path in seeds:
        data = path.read_bytes()
        assert len(data) <= target.MAX_LEN, f"{path.name} is longer than the target's MAX_LEN"
        tracemalloc.start()
        started = time.monotonic()
        try:
            target.fuzz(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        took = time.monotonic() - started
        assert took < SEED_SECONDS, f"{path.name}: {took:.2f} s"
        assert peak < SEED_MEMORY, f"{path.name}: {peak} bytes at the peak"


@pytest.fixture(scope="module")
def fuzz_results(request: pytest.FixtureRequest) -> dict[str, runner.Result]:
    """One bounded run of the selected targets, two at a time."""
    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_fuzz_run" and hasattr(item, "callspec")
    ]
    results = runner.run(names, SECONDS, JOBS, seed=SEED)
    # shown in the run's output (CI's log included), not only in the captured output
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(f"fuzz: {result.line()}" for result in results))
    return {r.target: r for r in results}


@pytest.mark.timeout(SECONDS * len(targets.TARGETS) + 600)
@pytest.mark.parametrize("name", targets.TARGETS)
def test_fuzz_run(name: str, fuzz_results: dict[str, runner.Result]) -> None:
    """A coverage-guided run of the target finds no input that breaks its contract, hangs
    (more than 10 s for one input) or takes the worker past its memory limit."""
    result = fuzz_results[name]
    reproducer = Path(result.reproducer) if result.reproducer else None
    assert result.ok, f"{result.line()}\nreproducer: {reproducer}\n{result.problem}"
    assert result.executions > 0
