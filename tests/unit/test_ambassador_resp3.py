"""RESP3 reading for the redis mode, and the HELLO/AUTH/CLIENT answers the ambassador gives
itself."""

from __future__ import annotations

import pytest

from sidecars.ambassador import resp, resp3
from sidecars.ambassador.redisconn import Connection

pytestmark = pytest.mark.unit

# one reply of every RESP3 type, as Redis 7 sends them (DEBUG PROTOCOL)
REPLIES = [
    b"$11\r\nHello World\r\n",
    b":12345\r\n",
    b",3.141\r\n",
    b"(1234567999999999999999999999999999999\r\n",
    b"_\r\n",
    b"*3\r\n:0\r\n:1\r\n:2\r\n",
    b"~3\r\n:0\r\n:1\r\n:2\r\n",
    b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
    b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$4\r\nreal\r\n",
    b"=29\r\ntxt:This is a verbatim\nstring\r\n",
    b"#t\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"-ERR x\r\n",
    b"+OK\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
]
PUSH = b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_every_resp3_reply_comes_out_whole_and_pushes_are_left_out(step: int) -> None:
    """Each reply is split out as its exact bytes however the stream is cut (an attribute
    with the reply it annotates); push messages between replies are counted, not returned."""
    stream = PUSH + REPLIES[0] + PUSH + b"".join(REPLIES[1:]) + PUSH
    reader = resp3.ReplyReader(resp.Limits())
    got: list[bytes] = []
    for at in range(0, len(stream), step):
        got += reader.feed(stream[at : at + step])
    assert got == REPLIES
    assert reader.pushes == 3 and not reader.buf


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"#x\r\n", "invalid boolean"),
        (b"#tt\r\n", "invalid boolean"),
        (b"_1\r\n", "null reply with a value"),
        (b"=3\r\nabc\r\n", "verbatim string without"),
        (b"=5\r\nabcde\r\n", "verbatim string without"),
        (b"!-1\r\n", "invalid bulk length -1"),
        (b"%-1\r\n", "invalid aggregate length -1"),
        (b"~-1\r\n", "invalid aggregate length -1"),
        (b"$?\r\n", "invalid bulk length"),
        (b"*?\r\n", "invalid array length"),
        (b"%60000\r\n", "over the limit of 50000"),  # pairs: 2 elements each
        (b"~100001\r\n", "over the limit of 100000"),
        (b"!200000000\r\n", "over the limit"),
        (b"*1\r\n>1\r\n:1\r\n", "push message inside a reply"),
        (b"~1\r\n" * 17 + b":1\r\n", "nested deeper"),
        (b"|1\r\n" * 17 + b":1\r\n", "nested deeper"),
        (b"?\r\n", "unknown reply type"),
        (b"$3\r\nabcd\r\n", "not followed by CRLF"),
    ],
)
def test_broken_or_oversized_resp3_is_refused(data: bytes, problem: str) -> None:
    """Every bound of the RESP2 reader holds for RESP3 (lengths, element counts - a map's
    pairs count twice -, nesting) and each malformed type is named."""
    reader = resp3.ReplyReader(resp.Limits(max_array=100000))
    with pytest.raises(resp.ProtocolError, match=problem):
        reader.feed(data)


def test_announced_aggregates_are_not_waited_for_beyond_what_came() -> None:
    """An incomplete map or attribute is not a reply yet, and costs only the bytes sent."""
    reader = resp3.ReplyReader(resp.Limits())
    assert reader.feed(b"%2\r\n+a\r\n:1\r\n+b\r\n") == []
    assert reader.feed(b"|1\r\n+k\r\n+v\r\n"[:0]) == []
    assert reader.feed(b":2\r\n") == [b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n"]
    assert reader.feed(b"|1\r\n+k\r\n+v\r\n") == []
    assert reader.feed(b"+OK\r\n") == [b"|1\r\n+k\r\n+v\r\n+OK\r\n"]


def test_resp3_array_elements_are_split_one_level() -> None:
    """MGET parts of RESP3 clients are merged from their elements, RESP3 nulls included."""
    assert resp3.elements(b"*3\r\n_\r\n$1\r\na\r\n%1\r\n:1\r\n:2\r\n") == [
        b"_\r\n",
        b"$1\r\na\r\n",
        b"%1\r\n:1\r\n:2\r\n",
    ]


def test_hello_switches_protocol_and_answers_in_it() -> None:
    """HELLO 3 answers a map saying proxy mode; HELLO alone answers in the current protocol;
    HELLO 2 returns to RESP2 with a flat array."""
    conn = Connection(7)
    assert conn.hello([b"HELLO"]).startswith(b"*14\r\n$6\r\nserver\r\n$10\r\nambassador\r\n")
    assert conn.proto == 2
    reply = conn.hello([b"HELLO", b"3"])
    assert reply.startswith(b"%7\r\n") and b"$5\r\nproto\r\n:3\r\n" in reply
    assert b"$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$5\r\nproxy\r\n" in reply
    assert conn.proto == 3
    assert conn.hello([b"HELLO"]).startswith(b"%7\r\n")
    assert b"$5\r\nproto\r\n:2\r\n" in conn.hello([b"hello", b"2"])
    assert conn.proto == 2


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ([b"4"], b"-NOPROTO unsupported protocol version\r\n"),
        ([b"1"], b"-NOPROTO unsupported protocol version\r\n"),
        ([b"-3"], b"-NOPROTO unsupported protocol version\r\n"),
        ([b"x"], b"-ERR Protocol version is not an integer or out of range\r\n"),
        ([b"03"], b"-ERR Protocol version is not an integer or out of range\r\n"),
        ([b"99999999999999999999"], b"-ERR Protocol version is not an integer or out of range\r\n"),
        ([b"3", b"AUTH", b"bob", b"pw"], b"-WRONGPASS invalid username-password pair or user "),
        ([b"3", b"AUTH", b"default"], b"-ERR Syntax error in HELLO option 'AUTH'\r\n"),
        ([b"3", b"SETNAME"], b"-ERR Syntax error in HELLO option 'SETNAME'\r\n"),
        ([b"3", b"FOO"], b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
        ([b"3", b"SETNAME", b"a b"], b"-ERR Client names cannot contain spaces"),
    ],
)
def test_bad_hello_is_refused_as_redis_refuses_it_and_keeps_the_protocol(
    args: list[bytes], reply: bytes
) -> None:
    """Redis 7's error for each bad HELLO; the protocol and name stay as they were."""
    conn = Connection(1)
    assert conn.hello([b"HELLO", *args]).startswith(reply)
    assert conn.proto == 2 and conn.name == b""


def test_auth_and_names_as_a_redis_without_password() -> None:
    """The default user logs in with any password, others are refused; a name set by HELLO
    or CLIENT SETNAME is what CLIENT GETNAME says."""
    conn = Connection(3)
    assert conn.hello([b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"app"])[:1] == b"%"
    assert conn.client([b"CLIENT", b"GETNAME"]) == b"$3\r\napp\r\n"
    assert conn.auth([b"AUTH", b"default", b"x"]) == b"+OK\r\n"
    assert conn.auth([b"AUTH", b"x"]).startswith(b"-ERR AUTH <password> called without")
    assert conn.auth([b"AUTH", b"bob", b"x"]).startswith(b"-WRONGPASS")
    assert conn.client([b"CLIENT", b"SETNAME", b""]) == b"+OK\r\n"
    assert conn.client([b"CLIENT", b"GETNAME"]) == b"_\r\n"  # RESP3 null
    assert conn.client([b"CLIENT", b"ID"]) == b":3\r\n"
    assert conn.client([b"CLIENT", b"SETINFO", b"lib-name", b"redis-py"]) == b"+OK\r\n"
    assert b"push messages" in conn.client([b"CLIENT", b"TRACKING", b"on"])
    assert b"CLIENT KILL" in conn.client([b"CLIENT", b"KILL", b"x"])
