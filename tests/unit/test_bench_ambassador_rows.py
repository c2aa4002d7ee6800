"""The ambassador bench's table and record from the figures of every round: each target's
medians, and as the ratio the median (and range) of the per-round paired ratios."""

from __future__ import annotations

import pytest

import bench.ambassador as amb
from bench._record import Record

pytestmark = pytest.mark.unit


def rounds(rps: list[float], cpu: list[float], others: list[float]) -> dict[str, list[amb.Run]]:
    """One target's peak runs at 16 and 64 connections (the same figures), a run's p99 being
    its round number, so that the run a figure comes from shows."""
    runs = [(r, 0.1, float(i)) for i, r in enumerate(rps)]
    costs = [(c, 0.0, 0.0) for c in cpu]
    busy = [(97.0, 98.0, o) for o in others]
    return {
        f"{k}{n}": v for n in (16, 64) for k, v in (("c", runs), ("cpu", costs), ("busy", busy))
    }


def test_http_peaks_print_medians_and_the_median_paired_ratio() -> None:
    """Three rounds; the second slowed both proxies. Ours is ahead of HAProxy in two rounds of
    three, so the ratio is the median paired one (1.02x), not that of the two medians (70k
    against 72k, 0.97x). Latency and busy shares come from the median-req/s run (the third),
    not from the one during which others took the least CPU (the first)."""
    peaks = {
        "pinned": {
            "ambassador": rounds([80e3, 60e3, 70e3], [14.0, 16.0, 13.0], [0.5, 1.0, 2.0]),
            "haproxy": rounds([78e3, 59e3, 72e3], [14.5, 16.8, 13.2], [1.0, 1.0, 1.0]),
            "nginx": rounds([50e3, 40e3, 45e3], [20.0, 22.0, 21.0], [1.0, 1.0, 1.0]),
            "direct": rounds([90e3, 70e3, 95e3], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
        }
    }
    paced = {name: (30e3, 0.2, 0.5) for name in ("ambassador", "haproxy", "nginx", "direct")}
    record = Record("unit")
    rows = amb.http_rows(peaks, paced, ("pinned",), record)
    assert rows[0] == (
        "http req/s, 16 conns", "70000", "72000", "45000", "90000", "1.02x (0.97-1.03x, 3 rounds)"
    )  # fmt: skip
    assert rows[1] == ("  p50/p99 ms, 16 conns", "0.10/2.00", "0.10/2.00", "0.10/2.00",
                       "0.10/0.00", "")  # fmt: skip
    assert rows[2] == ("  proxy CPU us/request, 16 conns", "14.0", "14.5", "21.0", "",
                       "1.04x anchor/ours (1.02-1.05x, 3 rounds)")  # fmt: skip
    assert rows[3][1] == "97/98, 2"
    got = record.ratios["http req/s, 16 conns"]
    assert got["value"] == pytest.approx(60 / 59)
    assert got["rounds"] == pytest.approx([80 / 78, 60 / 59, 70 / 72])
    assert (got["ours"], got["anchor"]) == (70e3, 72e3)
    cost = record.ratios["http proxy CPU/request, 64 conns, anchor/ours"]
    assert cost["value"] == pytest.approx(14.5 / 14.0)
    assert len(cost["rounds"]) == 3


def test_new_connections_print_medians_and_the_median_paired_ratio() -> None:
    """The same for new tcp connections: ours ahead in two rounds of three gives 1.02x, though
    its median rate (11,000) is below HAProxy's (11,500); the CPU per connection likewise."""
    conns = {
        "ambassador": {"conns": [12000.0, 9000.0, 11000.0], "cpu": [75.0, 80.0, 74.0]},
        "haproxy": {"conns": [11800.0, 8800.0, 11500.0], "cpu": [76.0, 82.0, 73.0]},
        "direct": {"conns": [20000.0, 15000.0, 21000.0], "cpu": []},
    }
    record = Record("unit")
    assert amb.conns_rows(conns, record) == [
        ("tcp new connections/s", "11000", "11500", "n/a", "20000",
         "1.02x (0.96-1.02x, 3 rounds), 0.60x direct"),
        ("  proxy CPU us/connection", "75.0", "76.0", "n/a", "",
         "1.01x anchor/ours (0.99-1.02x, 3 rounds)"),
    ]  # fmt: skip
    got = record.ratios["tcp new connections/s"]
    assert got["value"] == pytest.approx(12000 / 11800)
    assert got["rounds"] == pytest.approx([12000 / 11800, 9000 / 8800, 11000 / 11500])
    assert record.ratios["tcp proxy CPU/connection, anchor/ours"]["value"] == pytest.approx(76 / 75)
