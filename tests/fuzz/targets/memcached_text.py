"""The memcached mode's readers: a client's commands and a shard's replies, read in pieces.
Nothing but ProtocolError escapes; commands and replies are the same however the stream is
cut; a command's key (meta ones decoded from base64) is at most 250 bytes without control
characters; a storage command's data block ends in CRLF; each reply is the stream's next
bytes but for the quiet answers held to their MN."""

from __future__ import annotations

from sidecars.ambassador import mctext

from ._common import fed, pieces, split

MAX_LEN = 4096


def _commands(reads: list[bytes], max_value: int) -> tuple[list[mctext.Command], str]:
    reader = mctext.CommandReader(max_value)
    out: list[mctext.Command] = []
    for chunk in reads:
        out += reader.feed(chunk)
        if reader.error:
            break
    return out, reader.error


def _replies(reads: list[bytes], max_value: int, quiet: list[int]) -> tuple[list[bytes], bool]:
    reader = mctext.ReplyReader(max_value)
    for place in quiet:
        reader.expect_quiet(place)
    return fed(reader.feed, reads, mctext.ProtocolError)


def fuzz(data: bytes) -> None:
    (seed, size, quiet), stream = split(data, 3)
    max_value = size % 32 + 1
    whole, error = _commands([stream], max_value)
    cut, cut_error = _commands(pieces(stream, seed), max_value)
    assert bool(error) == bool(cut_error) and cut[: len(whole)] == whole
    for command in whole:
        name = command.words[0] if command.words else b""  # a blank line: answered ERROR
        key = command.key or (command.words[1] if len(command.words) > 1 else b"")
        if name in mctext.STORAGE or name in mctext.META or name in mctext.RETRIEVAL:
            assert len(key) <= mctext.MAX_KEY, command
        if name in mctext.STORAGE or name == b"ms":
            assert command.data.endswith(b"\r\n") and len(command.data) <= max_value + 2
    places = sorted({quiet % 4, quiet // 4 % 4}) if quiet & 1 else []
    replies, broke = _replies([stream], max_value, places)
    cut_replies, cut_broke = _replies(pieces(stream, seed), max_value, places)
    assert broke == cut_broke
    assert cut_replies[: len(replies)] == replies if broke else cut_replies == replies
    if not places:
        assert stream.startswith(b"".join(replies))
