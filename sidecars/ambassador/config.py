"""ambassador settings (`AMBASSADOR_*` variables or flags); each is also a per-listener key."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.checks import local_address, readable_file
from sidecars.runtime.settings import boolean, choice, duration, host_port, integer, listing, size
from sidecars.runtime.urls import is_header_name, is_host, is_target

POLICIES = ("round_robin", "least_conn", "p2c", "hash")


def health_check(raw: str) -> str:
    """`tcp`, `none`, or `http:/path` (a GET expecting a 2xx answer)."""
    value = raw.strip()
    if value in ("tcp", "none") or (value.startswith("http:/") and is_target(value[5:])):
        return value
    raise ValueError("expected tcp, none or http:/path (URL characters only)")


def header_name(raw: str) -> str:
    value = raw.strip()
    if value and not is_header_name(value):
        raise ValueError("expected an HTTP header name (letters, digits, - _ . and the like)")
    return value


def server_name(raw: str) -> str:
    value = raw.strip()
    if value and not is_host(value):
        raise ValueError("expected a DNS name or an IP address")
    return value


def hash_tag(raw: str) -> str:
    """Empty, or two characters such as `{}`."""
    value = raw.strip()
    if value and (len(value) != 2 or not value.isascii()):
        raise ValueError("expected two characters such as {} or nothing")
    return value


def nameserver(raw: str) -> str:
    """Empty, or an IP address and port (`10.0.0.10:53`, `[::1]:53`)."""
    value = raw.strip()
    if value:
        import ipaddress  # here: 0.17 MiB that an ambassador without a DNS server never needs

        try:
            ipaddress.ip_address(host_port()(value)[0])
        except ValueError:
            raise ValueError("expected empty or ip:port such as 10.0.0.10:53") from None
    return value


def ratio(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    """Every setting below `config` is a listener setting: a config file may override it per
    listener, and without a file the variables describe the single listener."""

    config: str = setting(
        "",
        "YAML or JSON file declaring several listeners (reloaded on change and on SIGHUP)",
        metavar="PATH",
        check=readable_file,
    )
    listen: tuple[str, int] = setting(
        "127.0.0.1:7000",
        "address the app connects to (pod-local by default)",
        host_port("127.0.0.1"),
        metavar="HOST:PORT",
        check=local_address,
    )
    upstreams: tuple[str, ...] = setting(
        "",
        "comma-separated members: host:port[*weight], dns://name:port[*weight],"
        " srv://_service._proto.name or file://path",
        listing(str),
        metavar="MEMBERS",
    )
    mode: str = setting(
        "tcp",
        "proxy raw TCP, HTTP/1.1, or Redis or memcached commands sharded by key",
        choice("tcp", "http", "redis", "memcached"),
        metavar="MODE",
    )
    policy: str = setting(
        "round_robin",
        "how a member is chosen: " + ", ".join(POLICIES),
        choice(*POLICIES),
        metavar="POLICY",
    )
    hash_header: str = setting(
        "",
        "http with policy hash: request header that is the hash key (empty: client address)",
        header_name,
        metavar="NAME",
    )
    connect_timeout: float = setting(
        "1s", "longest wait for a member to accept a connection", duration(0.001, 600.0)
    )
    request_timeout: float = setting(
        "30s", "http: longest wait for a member's response head", duration(0.001, 3600.0)
    )
    idle_timeout: float = setting(
        "300s",
        "close a connection (client, member, pooled) idle for this long",
        duration(0.01, 86400.0),
    )
    header_timeout: float = setting(
        "10s", "http: longest time a client may take to send a request head", duration(0.01, 600.0)
    )
    max_header_size: int = setting(
        "16KiB", "http: largest request head; bigger ones get 431", size(1024, 1 << 20)
    )
    max_connections: int = setting(
        "1024", "most client connections at once; more are refused", integer(1, 1_000_000)
    )
    max_pending: int = setting(
        "1024", "http: most requests in flight at once; more get 503", integer(1, 1_000_000)
    )
    member_max_connections: int = setting(
        "0",
        "most connections (tcp) or requests in flight (http) per member; 0: no limit",
        integer(0, 1_000_000),
    )
    slow_start: float = setting(
        "0s",
        "a member that joins or comes back gets a share growing over this long; 0: at once",
        duration(0.0, 3600.0),
    )
    pool_size: int = setting(
        "64", "http: most idle keep-alive connections kept per member", integer(0, 10_000)
    )
    retries: int = setting(
        "2", "further members tried after a failed connect or retriable answer", integer(0, 10)
    )
    retry_budget: float = setting(
        "0.2", "retries allowed as a share of requests (plus 10 per second)", ratio
    )
    health_check: str = setting(
        "tcp", "active check: tcp, http:/path (expects 2xx) or none", health_check
    )
    health_interval: float = setting("5s", "time between active checks", duration(0.01, 3600.0))
    health_timeout: float = setting("1s", "longest wait for one check", duration(0.001, 600.0))
    health_fall: int = setting("2", "failed checks in a row that mark a member down", integer(1))
    health_rise: int = setting("1", "passed checks in a row that mark it up again", integer(1))
    eject_failures: int = setting(
        "3", "failures in a row (connect, reset, 502/503/504) that eject a member", integer(1)
    )
    eject_time: float = setting(
        "5s", "first ejection time; it doubles with each ejection in a row", duration(0.01, 3600.0)
    )
    eject_max_time: float = setting("300s", "longest ejection time", duration(0.01, 86400.0))
    dns_interval: float = setting("5s", "time between DNS re-resolutions", duration(0.01, 3600.0))
    dns_family: str = setting(
        "any", "address family kept from DNS answers", choice("any", "ipv4", "ipv6")
    )
    dns_server: str = setting(
        "",
        "nameserver (ip:port) asked for dns:// and srv:// members (empty: the system's)",
        nameserver,
        metavar="IP:PORT",
    )
    file_interval: float = setting(
        "1s", "time between checks of watched files for changes", duration(0.01, 3600.0)
    )
    tls: bool = setting(
        "false", "speak TLS to the members (the app still speaks plain text)", boolean
    )
    tls_server_name: str = setting(
        "",
        "TLS: name sent (SNI) and verified (empty: each member's host)",
        server_name,
        metavar="NAME",
    )
    tls_ca_file: str = setting(
        "",
        "TLS: PEM bundle of the CAs members are verified against (empty: the system's)",
        metavar="PATH",
        check=readable_file,
    )
    tls_verify: bool = setting(
        "true", "TLS: verify the members' certificates and names (off: encryption only)", boolean
    )
    tls_cert_file: str = setting(
        "",
        "TLS: client certificate (PEM) shown to members that ask (mTLS)",
        metavar="PATH",
        check=readable_file,
    )
    tls_key_file: str = setting(
        "", "TLS: private key (PEM) of the client certificate", metavar="PATH", check=readable_file
    )
    tls_min_version: str = setting(
        "1.2", "TLS: lowest protocol version accepted", choice("1.2", "1.3"), metavar="VERSION"
    )
    listen_tls_cert_file: str = setting(
        "",
        "TLS on the listener: server certificate (PEM chain) shown to the app; set with its key"
        " to terminate TLS",
        metavar="PATH",
        check=readable_file,
    )
    listen_tls_key_file: str = setting(
        "",
        "TLS on the listener: private key (PEM) of the server certificate",
        metavar="PATH",
        check=readable_file,
    )
    listen_tls_client_ca_file: str = setting(
        "",
        "TLS on the listener: PEM bundle of the CAs the app's client certificates must come"
        " from (mTLS; empty: none asked)",
        metavar="PATH",
        check=readable_file,
    )
    listen_tls_min_version: str = setting(
        "1.2",
        "TLS on the listener: lowest protocol version accepted from the app",
        choice("1.2", "1.3"),
        metavar="VERSION",
    )
    listen_tls_handshake_timeout: float = setting(
        "5s",
        "TLS on the listener: longest time a client may take to finish its handshake",
        duration(0.01, 600.0),
    )
    redis_hash_tag: str = setting(
        "{}",
        "redis, memcached: two characters around the part of a key that is hashed "
        "(empty: the whole key)",
        hash_tag,
        metavar="TAG",
    )
    redis_rehash: bool = setting(
        "false",
        "redis, memcached: keys of a shard that is down go to the others "
        "(twemproxy's auto_eject_hosts)",
        boolean,
    )
    redis_max_bulk: int = setting(
        "64MiB", "redis: largest bulk string in a command or reply", size(1024, 512 << 20)
    )
    redis_max_array: int = setting(
        "65536", "redis: most arguments in a command or elements in a reply", integer(2, 1 << 24)
    )
    memcached_max_value: int = setting(
        "1MiB", "memcached: largest data block in a command or reply", size(1024, 512 << 20)
    )
