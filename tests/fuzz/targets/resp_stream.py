"""The redis mode's readers over a stream read in pieces. Replies (RESP2 and RESP3, from a
shard): nothing but ProtocolError escapes, the replies are the stream's bytes in order (RESP3
pushes left out), a reply read alone is itself, they are the same however the stream is cut,
and RESP3 reads a RESP2 stream as RESP2 does. Commands (from a client): the same however the
stream is cut, within the limits, and an array command's bytes read alone are itself."""

from __future__ import annotations

from sidecars.ambassador import resp, resp3

from ._common import fed, pieces, split

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    (seed, bulk, array), stream = split(data, 3)
    limits = resp.Limits(max_bulk=bulk % 64 + 1, max_array=array % 9 + 2, max_inline=64)
    results = []
    for kind in (resp.ReplyReader, resp3.ReplyReader):
        reader, cut_reader = kind(limits), kind(limits)
        whole, broke = fed(reader.feed, [stream], resp.ProtocolError)
        cut, cut_broke = fed(cut_reader.feed, pieces(stream, seed), resp.ProtocolError)
        assert broke == cut_broke, (kind, broke)
        assert cut[: len(whole)] == whole if broke else cut == whole
        pushes = getattr(reader, "pushes", 0)
        if not broke and not pushes:
            assert b"".join(whole) + bytes(reader.buf) == stream
        pos = 0
        for reply in whole:
            pos = stream.find(reply, pos)
            assert pos >= 0, reply
            alone = kind(limits)
            assert alone.feed(reply) == [reply] and not alone.buf
            pos += len(reply)
        results.append((whole, broke))
    (two, two_broke), three = results
    if not two_broke:
        assert three == (two, False), (two, three)
    _commands(stream, seed, limits)


def _commands(stream: bytes, seed: int, limits: resp.Limits) -> None:
    whole = resp.CommandReader(limits)
    commands = whole.feed(stream)
    cut = resp.CommandReader(limits)
    got: list[resp.Command] = []
    for chunk in pieces(stream, seed):
        got += cut.feed(chunk)
        if cut.error:
            break
    assert bool(whole.error) == bool(cut.error)
    assert got[: len(commands)] == commands if whole.error else got == commands
    for args, raw in commands:
        assert args and len(args) <= limits.max_array
        assert all(len(arg) <= max(limits.max_bulk, limits.max_inline) for arg in args)
        if raw:
            assert resp.CommandReader(limits).feed(raw) == [(args, raw)]
