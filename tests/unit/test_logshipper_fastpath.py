"""The hot path's shortcuts give exactly what the general path gives: framing, items, answers."""

from __future__ import annotations

import random
import subprocess
import sys
from itertools import accumulate

import orjson
import pytest

from sidecars.logshipper.batching import Budget, Pipeline, Progress
from sidecars.logshipper.bulk import Outcome, all_ok, classify_response, parse_body
from sidecars.logshipper.documents import DocumentBuilder
from sidecars.logshipper.framing import Framer
from sidecars.logshipper.shipping import _each

pytestmark = pytest.mark.unit

UID = "0123456789abcdef"
PATH = orjson.dumps("/var/log/app/a%.log")


def _chunk(rng: random.Random, alphabet: bytes, n: int) -> bytes:
    lines = [bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(n)]
    return b"\n".join(lines) + b"\n" + bytes(rng.choice(alphabet) for _ in range(5))


@pytest.mark.parametrize("seed", range(20))
def test_frame_plain_matches_frame_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    data = _chunk(rng, b'ab \t"\xc3\xa9', 50)
    max_line = rng.choice((8, 30, 64))
    offset = rng.randrange(0, 1000)
    plain = Framer(max_line).frame_plain(data, offset)
    lines, used = Framer(max_line).frame(data, offset)
    if plain is None:
        assert any(cut for *_, cut in lines)  # only cut lines need the general path
        return
    parts, starts, used_plain = plain
    assert used_plain == used
    assert [(s, e, p, False) for s, e, p in zip(starts, starts[1:], parts, strict=False)] == lines


def test_frame_plain_declines_skipping_and_long_tails() -> None:
    framer = Framer(4)
    assert framer.frame_plain(b"abcdefgh", 0) is None  # no newline
    assert framer.frame_plain(b"ab\nabcdefgh", 0) is None  # the tail is already too long
    framer.skipping = True
    assert framer.frame_plain(b"ab\ncd\n", 0) is None


@pytest.mark.parametrize(
    "text",
    [
        b"plain line one\nplain 100% line two\n\n",
        b"caf\xc3\xa9 \xe2\x82\xac\nno escapes here\n",
        b'a "quoted" line\nback\\slash\n',
        b"tab\there\nctrl \x01\n",
        b"bad \xff utf-8\nok\n",
        b'one quote " and one newline\n',  # as long escaped as one newline more would be
        b"del \x7f, line separator \xe2\x80\xa8, nul \x00\n",
    ],
)
def test_chunk_items_equal_the_per_line_items(text: bytes) -> None:
    builder = DocumentBuilder("logs-%Y.%m", metadata={"kubernetes": {"pod": {"name": "p%s"}}})
    parts, starts, _ = Framer(1000).frame_plain(text, 77) or ([], [], 0)
    run = builder.run(UID, PATH, 1.5e9, parts, starts, text)
    fast = _each([run[0]], len(parts)) if run else builder.items(UID, PATH, 1.5e9, parts, starts)
    item = builder.item_maker(UID, PATH, 1.5e9)
    slow = [item(s, p, False) for s, p in zip(starts, parts, strict=False)]
    assert [[orjson.loads(x) for x in i.splitlines()] for i in fast] == [
        [orjson.loads(x) for x in i.splitlines()] for i in slow
    ]


def test_extend_with_ends_from_frame_plain_moves_progress_to_each_batch_end() -> None:
    parts, starts, _ = Framer(100).frame_plain(b"x" * 9 + b"\n" + b"y\n" * 30, 0) or ([], [], 0)
    pipe = Pipeline(max_bytes=20, max_docs=1000, budget=Budget(1 << 20))
    progress = Progress(0)
    pipe.extend(progress, starts[1:], [p + b"-item" for p in parts])
    pipe.seal()
    while not pipe.queue.empty():
        batch = pipe.queue.get_nowait()
        pipe.resolved(batch)
    assert progress.acked == starts[-1] == 10 + 60


def test_all_ok_recognises_only_a_complete_success() -> None:
    ok = b'{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}'
    assert all_ok(ok, 2)
    assert not all_ok(ok, 3)  # a short answer is not a success for three documents
    assert not all_ok(ok.replace(b"false", b"true"), 2)
    assert not all_ok("text", 2)
    mixed = b'{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429}}]}'
    assert [r.outcome for r in classify_response(mixed, 2, False)] == [Outcome.OK, Outcome.RETRY]
    assert parse_body(b"<html>") == "<html>"


def test_no_elasticsearch_package_and_no_aiohttp_or_requests_at_run_time() -> None:
    """The shipper imports neither the Elasticsearch client packages nor other HTTP libraries
    (memory, start time): its node pool is its own, over the runtime's HTTP client; aiohttp
    and requests stay importable for others afterwards."""
    code = (
        "import sys, importlib.util, sidecars.runtime\n"
        "before = {'aiohttp', 'requests'} & set(sys.modules)\n"
        "import sidecars.logshipper.service\n"
        "for name in ('elasticsearch', 'elastic_transport', 'urllib3', 'http.client'):\n"
        "    assert name not in sys.modules, name + ' imported'\n"
        "assert before or 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
        "assert before or 'requests' not in sys.modules, 'requests imported'\n"
        "import aiohttp  # still importable by others afterwards\n"
        "if importlib.util.find_spec('requests'):\n"
        "    import requests\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_resolved_batch_lets_go_of_its_documents() -> None:
    # a file's progress keeps resolved batches referenced until older ones resolve (a batch
    # backing off after an outage): they must not keep their documents meanwhile
    pipe = Pipeline(max_bytes=10, max_docs=1000, budget=Budget(1 << 20))
    progress = Progress(0)
    pipe.extend(progress, [20, 40], [b"a" * 20, b"b" * 20])
    first, second = pipe.queue.get_nowait(), pipe.queue.get_nowait()
    pipe.resolved(second)
    assert second.items == [] and progress.acked == 0  # the first still holds the checkpoint
    pipe.resolved(first)
    assert progress.acked == 40 and pipe.budget.used == 0


@pytest.mark.parametrize(
    "offset",
    [0, 3, 9, 15, 250, 4090, 99_990, 16**5 - 90, 10**9 - 120, 2**40 + 7],
    ids=lambda o: f"offset {o}",
)
def test_a_run_is_the_items_joined_and_knows_where_each_ends(offset: int) -> None:
    """A chunk formatted at once gives the bytes of its items one after the other, and the
    end of each item in them, also where the offsets gain a hex or a decimal digit."""
    rng = random.Random(offset)
    text = _chunk(rng, b"abc %", 60)
    builder = DocumentBuilder("logs-a-b", create=True, metadata={"k": {"v": "100%"}})
    parts, starts, used = Framer(1000).frame_plain(text, offset) or ([], [], 0)
    items = builder.items(UID, PATH, 1.5e9, parts, starts)
    run = builder.run(UID, PATH, 1.5e9, parts, starts, memoryview(text)[:used])
    assert run is not None
    body, ends = run
    assert body == b"".join(items)
    assert list(ends) == list(accumulate(map(len, items)))


def test_no_run_for_a_chunk_that_needs_escapes_or_parsing() -> None:
    """Chunks JSON must escape, and JSON-line or record-time builders, take the item path."""
    text = b'a "quoted" line\n'
    parts, starts, _ = Framer(100).frame_plain(text, 0) or ([], [], 0)
    assert DocumentBuilder("x").run(UID, PATH, 0.0, parts, starts, text) is None
    plain = b"plain line\n"
    parts, starts, _ = Framer(100).frame_plain(plain, 0) or ([], [], 0)
    json_lines = DocumentBuilder("x", json_lines=True)
    assert json_lines.run(UID, PATH, 0.0, parts, starts, plain) is None


def test_extend_run_fills_the_same_batches_as_adding_each_item() -> None:
    """A run cut into batches holds the same bytes, documents and checkpoints per batch as
    its items added one by one (sizes and counts at the same cuts)."""
    text = _chunk(random.Random(7), b"abcdef ", 300)
    builder = DocumentBuilder("logs-a-b", create=True)
    parts, starts, used = Framer(1000).frame_plain(text, 5) or ([], [], 0)
    items = builder.items(UID, PATH, 0.0, parts, starts)
    run = builder.run(UID, PATH, 0.0, parts, starts, text[:used])
    assert run is not None
    one, many = Pipeline(2000, 7, Budget(1 << 20)), Pipeline(2000, 7, Budget(1 << 20))
    p1, p2 = Progress(0), Progress(0)
    for end, item in zip(starts[1:], items, strict=True):
        one.add(p1, end, item)
    many.extend_run(p2, starts[1:], *run)
    one.seal()
    many.seal()
    assert one.queue.qsize() == many.queue.qsize() > 10
    while not one.queue.empty():
        a, b = one.queue.get_nowait(), many.queue.get_nowait()
        assert (b"".join(a.items), a.nbytes, a.docs) == (b"".join(b.items), b.nbytes, b.docs)
        one.resolved(a)
        many.resolved(b)
        assert p1.acked == p2.acked
    assert one.budget.used == many.budget.used == 0


def test_runs_are_taken_apart_into_their_items() -> None:
    """After anything but the all-acknowledged answer, a request's runs become the single
    items the per-item handling (retry, dead letter, halving on 413) works on."""
    items = [b'{"index":{}}\n{"n":%d}\n' % i for i in range(5)]
    run = memoryview(b"".join(items[1:4]))
    assert _each([items[0], run, items[4]], 5) == items
    assert _each(items, 5) is items
    with pytest.raises(ValueError, match="4 bulk items where 5"):
        _each(items[:4], 5)
