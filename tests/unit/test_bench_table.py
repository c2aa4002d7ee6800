"""The benches' plain-text table printer."""

from __future__ import annotations

import pytest

from bench._table import print_table

pytestmark = pytest.mark.unit


def test_columns_are_as_wide_as_their_widest_cell_and_lines_carry_no_trailing_blanks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each column is padded to its widest cell, two spaces apart; the last column is not
    padded."""
    print_table([("a", "bb", "c"), ("dddd", "e", "")])
    assert capsys.readouterr().out.splitlines() == ["a     bb  c", "dddd  e"]


def test_a_head_is_printed_first_with_a_rule_under_it(capsys: pytest.CaptureFixture[str]) -> None:
    """A head counts in the column widths and is followed by dashes as wide as each column."""
    print_table([("1", "2.00x")], ("figure", "ratio"))
    assert capsys.readouterr().out.splitlines() == [
        "figure  ratio",
        "------  -----",
        "1       2.00x",
    ]


def test_no_rows_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty table prints no line (and raises nothing)."""
    print_table([])
    assert capsys.readouterr().out == ""
