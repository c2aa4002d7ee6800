"""memcached's text protocol for the memcached mode: client commands and shard replies read
whole however the stream is cut, and a split get merged back in the order asked."""

from __future__ import annotations

import pytest

from sidecars.ambassador import mctext
from sidecars.ambassador.memcached import _merge_get

pytestmark = pytest.mark.unit

STREAM = (
    b"set k 1 0 4\r\na\r\nb\r\n"
    b"get a  b\r\n"
    b"cas k 0 -1 0 42 noreply\r\n\r\n"
    b"incr n 5\n"
    b"delete k noreply\r\n"
)


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(STREAM)])
def test_commands_are_the_same_however_the_stream_is_cut(step: int) -> None:
    """Commands split at any byte come out whole, once, in order; a data block may hold CRLF;
    noreply is taken off and remembered; the wire form is normalised."""
    reader = mctext.CommandReader(1024)
    got: list[mctext.Command] = []
    for at in range(0, len(STREAM), step):
        got += reader.feed(STREAM[at : at + step])
    assert not reader.error and not reader.buf
    assert [c.wire() for c in got] == [
        b"set k 1 0 4\r\na\r\nb\r\n",
        b"get a b\r\n",
        b"cas k 0 -1 0 42\r\n\r\n",
        b"incr n 5\r\n",
        b"delete k\r\n",
    ]
    assert [c.noreply for c in got] == [False, False, True, False, True]


REPLIES = (
    b"STORED\r\n"
    b"VALUE a 0 5 7\r\nEND\r\n\r\nVALUE b 3 0\r\n\r\nEND\r\n"
    b"END\r\n"
    b"SERVER_ERROR out of memory\r\n"
)


@pytest.mark.parametrize("step", [1, 2, 5, len(REPLIES)])
def test_replies_are_the_same_however_the_stream_is_cut(step: int) -> None:
    """A get's reply is its VALUE entries up to END, even when a value reads END; other
    replies are one line."""
    reader = mctext.ReplyReader(1024)
    got: list[bytes] = []
    for at in range(0, len(REPLIES), step):
        got += reader.feed(REPLIES[at : at + step])
    assert got == [
        b"STORED\r\n",
        b"VALUE a 0 5 7\r\nEND\r\n\r\nVALUE b 3 0\r\n\r\nEND\r\n",
        b"END\r\n",
        b"SERVER_ERROR out of memory\r\n",
    ]
    assert mctext.entries(got[1]) == [
        (b"a", b"VALUE a 0 5 7\r\nEND\r\n\r\n"),
        (b"b", b"VALUE b 3 0\r\n\r\n"),
    ]


def test_a_split_get_is_merged_in_the_order_asked() -> None:
    """Entries from each shard go back to the place of their key; misses stay out; a key
    asked twice is answered twice; an error from one shard is the answer."""
    merge = _merge_get([[b"a", b"c", b"a"], [b"b", b"d"]], [[0, 2, 4], [1, 3]], 5)
    one = b"VALUE a 0 1\r\n1\r\nVALUE a 0 1\r\n1\r\nEND\r\n"
    two = b"VALUE b 0 1\r\n2\r\nVALUE d 0 1\r\n4\r\nEND\r\n"
    assert merge([one, two]) == (
        b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nVALUE d 0 1\r\n4\r\nVALUE a 0 1\r\n1\r\nEND\r\n"
    )
    assert merge([one, b"SERVER_ERROR busy\r\n"]) == b"SERVER_ERROR busy\r\n"
