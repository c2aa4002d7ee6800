"""The redis and memcached benches' table and record from the rates of every round: each
proxy's medians, and as the ratio to nutcracker the median (and range) of the per-round paired
ratios."""

from __future__ import annotations

import pytest

from bench._record import Record
from bench.redis import nutcracker_rows

pytestmark = pytest.mark.unit


def test_rows_give_medians_and_the_median_paired_ratio() -> None:
    """Five rounds; the second and fourth slowed both proxies. Ours is ahead of nutcracker in
    four rounds of five, so the ratio is the median paired one (1.05x), not that of the two
    medians (80k against 84k, 0.95x), which pairs runs from different rounds."""
    ours = [100e3, 60e3, 80e3, 62e3, 90e3]
    anchor = [95e3, 57e3, 84e3, 59e3, 86e3]
    record = Record("unit")
    rows = nutcracker_rows({"redis SET ops/s, -P 1": (ours, anchor)}, record)
    assert rows == [
        ("figure", "ours", "nutcracker", "ratio ours/nutcracker"),
        ("redis SET ops/s, -P 1", "80000", "84000", "1.05x (0.95-1.05x, 5 rounds)"),
    ]
    got = record.ratios["redis SET ops/s, -P 1"]
    each = [o / a for o, a in zip(ours, anchor, strict=True)]
    assert got["value"] == pytest.approx(sorted(each)[2])
    assert got["rounds"] == pytest.approx(each)
    assert (got["ours"], got["anchor"]) == (80e3, 84e3)


def test_one_round_has_no_range() -> None:
    """With one round the ratio is that round's, without a range; every figure gets its row."""
    record = Record("unit")
    rates = {"memcached set+get ops/s, -P 1": ([30e3], [40e3]), "other": ([10e3], [5e3])}
    rows = nutcracker_rows(rates, record)
    assert rows[1:] == [
        ("memcached set+get ops/s, -P 1", "30000", "40000", "0.75x"),
        ("other", "10000", "5000", "2.00x"),
    ]
    assert record.ratios["other"]["rounds"] == [2.0]
