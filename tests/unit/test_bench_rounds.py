"""bench/_rounds.py: ratios of two targets taken round by round (paired), their median and
range, and the run whose figures go beside a median."""

from __future__ import annotations

import math

import pytest

from bench._rounds import median_index, paired

pytestmark = pytest.mark.unit


def test_the_ratio_is_the_median_of_the_rounds_paired_ratios() -> None:
    """Each round's figures are divided by each other; the median of those ratios is the ratio,
    not the ratio of the two medians. A round slowed for both (here the second) leaves its
    ratio alone, while the targets' own medians come from different rounds."""
    ours, anchor = [80.0, 60.0, 70.0], [78.0, 59.0, 72.0]
    got = paired(ours, anchor)
    assert got.rounds == pytest.approx((80 / 78, 60 / 59, 70 / 72))
    assert got.median == pytest.approx(60 / 59)
    assert got.text() == "1.02x (0.97-1.03x, 3 rounds)"
    assert got.text("anchor/ours") == "1.02x anchor/ours (0.97-1.03x, 3 rounds)"


def test_one_round_has_no_range_and_a_zero_denominator_is_left_out() -> None:
    """One round prints its ratio alone; a round whose denominator is 0 has no ratio and is left
    out; with none left the ratio is not a number and prints n/a."""
    assert paired([3.0], [2.0]).text() == "1.50x"
    got = paired([3.0, 5.0, 4.0], [2.0, 0.0, 4.0])
    assert got.rounds == (1.5, 1.0)
    assert got.median == 1.25
    nothing = paired([1.0], [0.0])
    assert math.isnan(nothing.median) and nothing.text() == "n/a"


def test_rounds_that_do_not_pair_up_are_refused() -> None:
    """Two targets with a different number of rounds cannot be paired: a bug in the bench."""
    with pytest.raises(ValueError, match="paired rounds differ in number: 2 and 3"):
        paired([1.0, 2.0], [1.0, 2.0, 3.0])


def test_the_median_run_is_the_lower_middle_one_of_an_even_count() -> None:
    """The median run's index, whatever the order of the rounds; of an even count the lower of
    the two middle runs (one real run, not a mean)."""
    assert median_index([70.0, 50.0, 60.0]) == 2
    assert median_index([70.0, 50.0, 60.0, 65.0]) == 2
    assert median_index([5.0]) == 0
    with pytest.raises(ValueError, match="no values"):
        median_index([])
