"""What a client's own connection holds in redis mode, answered by the ambassador itself since
shard connections are shared: the protocol (`HELLO 2` or `HELLO 3`), the client's name and id
(`HELLO ... SETNAME`, `CLIENT SETNAME/GETNAME/ID`; `CLIENT SETINFO` is taken and forgotten),
and `AUTH`, answered as a Redis whose default user has no password answers it (the ambassador
asks none; members get no client's credentials). Error texts are Redis 7's."""

from __future__ import annotations

from sidecars.ambassador import resp, resp3

_WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
_NO_PASSWORD = resp.error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
_BAD_NAME = resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
_NOT_INTEGER = resp.error("ERR Protocol version is not an integer or out of range")


def _integer(raw: bytes) -> int | None:
    """A 64-bit signed integer as Redis reads one (no sign but '-', no leading zero)."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits.isdigit() or len(digits) > 19 or (digits[:1] == b"0" and raw != b"0"):
        return None
    value = int(raw)
    return value if -(1 << 63) <= value < 1 << 63 else None


def _good_name(name: bytes) -> bool:
    return all(33 <= byte <= 126 for byte in name)


def _login(user: bytes) -> bytes | None:
    """None when `user` may log in with any password (only `default`), else the refusal."""
    return None if user == b"default" else _WRONGPASS


class Connection:
    """A client's protocol, id and name."""

    __slots__ = ("proto", "id", "name")

    def __init__(self, client_id: int) -> None:
        self.proto, self.id, self.name = 2, client_id, b""

    def hello(self, args: list[bytes]) -> bytes:
        """HELLO [protover [AUTH user password] [SETNAME name]]: the reply; `proto` switches
        only when the whole command is good, as in Redis."""
        proto, at = self.proto, 1
        if len(args) > 1:
            version = _integer(args[1])
            if version is None:
                return _NOT_INTEGER
            if version not in (2, 3):
                return b"-NOPROTO unsupported protocol version\r\n"
            proto, at = version, 2
        name = None
        while at < len(args):
            option, more = args[at].upper(), len(args) - at - 1
            if option == b"AUTH" and more >= 2:
                refused = _login(args[at + 1])
                if refused is not None:
                    return refused
                at += 3
            elif option == b"SETNAME" and more >= 1:
                name, at = args[at + 1], at + 2
            else:
                shown = args[at][:64].decode("latin-1")
                return resp.error(f"ERR Syntax error in HELLO option '{shown}'")
        if name is not None:
            if not _good_name(name):
                return _BAD_NAME
            self.name = name
        self.proto = proto
        return resp3.hello_reply(proto, self.id)

    def auth(self, args: list[bytes]) -> bytes:
        """AUTH [user] password."""
        if len(args) == 2:
            return _NO_PASSWORD
        if len(args) == 3:
            return _login(args[1]) or b"+OK\r\n"
        return resp.error("ERR syntax error")

    def client(self, args: list[bytes]) -> bytes:
        """CLIENT SETNAME/GETNAME/ID/SETINFO; the rest holds a server's state or sends push messages
        and is refused by name."""
        if len(args) < 2:
            return resp.error("ERR wrong number of arguments for 'client' command")
        sub = args[1].upper()
        if sub == b"SETNAME" and len(args) == 3:
            if not _good_name(args[2]):
                return _BAD_NAME
            self.name = args[2]
            return b"+OK\r\n"
        if sub == b"GETNAME" and len(args) == 2:
            if not self.name:
                return b"_\r\n" if self.proto == 3 else b"$-1\r\n"
            return b"$%d\r\n%s\r\n" % (len(self.name), self.name)
        if sub == b"ID" and len(args) == 2:
            return b":%d\r\n" % self.id
        if sub == b"SETINFO" and len(args) == 4 and args[2].upper() in (b"LIB-NAME", b"LIB-VER"):
            return b"+OK\r\n"  # a client library saying what it is: nothing to keep
        if sub in (b"SETNAME", b"GETNAME", b"ID"):
            return resp.error(f"ERR wrong number of arguments for 'client|{sub.lower().decode()}'")
        shown = sub[:32].decode("latin-1")
        if sub == b"TRACKING":
            why = "sends push messages that no shared shard connection can route"
        else:
            why = "acts on a server's connections"
        return resp.error(f"ERR ambassador: CLIENT {shown} {why} and is refused in redis mode")
