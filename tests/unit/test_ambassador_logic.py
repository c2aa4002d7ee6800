"""Unit tests: member syntax, listener files, balancing policies, ejection, budget, panic."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from sidecars.ambassador.balancer import Balancer
from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.members import EjectPolicy, Member
from sidecars.ambassador.service import SIDECAR
from sidecars.ambassador.spec import (
    Address,
    from_settings,
    load_file,
    parse_address,
    parse_member_file,
    parse_source,
)
from sidecars.runtime import ConfigError

pytestmark = pytest.mark.unit


def config(**env: str):  # type: ignore[no-untyped-def]
    return SIDECAR.load_config([], {f"AMBASSADOR_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.1:6379", Address("10.0.0.1", 6379, 1)),
        ("db-0.db:5432*3", Address("db-0.db", 5432, 3)),
        ("[::1]:80", Address("::1", 80, 1)),
    ],
)
def test_addresses_parse(raw: str, expected: Address) -> None:
    assert parse_address(raw) == expected


@pytest.mark.parametrize("raw", ["a:x", "a", ":80", "a:0", "a:70000", "a:80*0", "a:80*x", "a b:1"])
def test_bad_addresses_are_named(raw: str) -> None:
    with pytest.raises(ValueError, match="host:port|weight"):
        parse_address(raw)


def test_sources() -> None:
    assert parse_source("dns://redis.default.svc:6379").kind == "dns"
    assert parse_source("file:///etc/members").path == "/etc/members"
    with pytest.raises(ValueError):
        parse_source("file://")


def test_srv_sources() -> None:
    """srv://_service._proto.name (a trailing dot allowed); anything else is named."""
    source = parse_source("srv://_redis._tcp.redis.data.svc.cluster.local.")
    assert (source.kind, source.name) == ("srv", "_redis._tcp.redis.data.svc.cluster.local")
    for bad in [
        "srv://",
        "srv://redis.data",
        "srv://_redis.data",
        "srv://_a._tcp.x:80",
        "srv://_a._tcp",
    ]:
        with pytest.raises(ValueError, match="srv://_service._proto.name"):
            parse_source(bad)


@pytest.mark.parametrize("raw", ["dns.local:53", "10.0.0.10", "10.0.0.10:99999"])
def test_a_dns_server_is_an_ip_and_port(raw: str) -> None:
    with pytest.raises(ConfigError, match="AMBASSADOR_DNS_SERVER"):
        config(dns_server=raw)
    assert config(dns_server="[::1]:5353").dns_server == "[::1]:5353"


def test_member_file_syntax() -> None:
    text = "# members\n10.0.0.1:80\n\n10.0.0.2:80*2  # heavy\n"
    assert parse_member_file(text) == [Address("10.0.0.1", 80), Address("10.0.0.2", 80, 2)]
    with pytest.raises(ValueError, match="line 2"):
        parse_member_file("10.0.0.1:80\nnope\n")


def test_settings_without_members_declare_no_listener_and_name_each_bad_one() -> None:
    assert from_settings(config()) == []
    with pytest.raises(ValueError) as err:
        from_settings(config(upstreams="a:1,b:x,c:2*0"))
    lines = str(err.value).split("\n")
    assert len(lines) == 2 and "'b:x'" in lines[0] and "'c:2*0'" in lines[1]


def test_bad_env_values_name_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        SIDECAR.load_config([], {"AMBASSADOR_POLICY": "random", "AMBASSADOR_HEALTH_CHECK": "icmp"})
    text = " ".join(err.value.problems)
    assert "AMBASSADOR_POLICY='random'" in text and "AMBASSADOR_HEALTH_CHECK='icmp'" in text


def test_yaml_file_declares_listeners(tmp_path: Path) -> None:
    path = tmp_path / "amb.yaml"
    path.write_text(
        "listeners:\n"
        "  redis:\n    listen: 127.0.0.1:6379\n    upstreams: [10.0.0.1:6379, 10.0.0.2:6379]\n"
        "    policy: hash\n"
        "  api:\n    listen: :8080\n    mode: http\n    upstreams: dns://api.example:80\n"
        "    request_timeout: 2s\n"
    )
    base = config(upstreams="1.1.1.1:1", connect_timeout="3s")
    redis, api = load_file(str(path), base)
    assert redis.name == "redis" and redis.settings.policy == "hash"
    assert [s.address for s in redis.sources] == [
        Address("10.0.0.1", 6379),
        Address("10.0.0.2", 6379),
    ]
    assert api.settings.mode == "http" and api.settings.request_timeout == 2.0
    assert api.settings.listen == ("127.0.0.1", 8080)
    assert api.settings.connect_timeout == 3.0  # inherited from the variables


def test_json_file_and_every_problem_reported(tmp_path: Path) -> None:
    path = tmp_path / "amb.json"
    body = {
        "listeners": {
            "a": {"listen": "127.0.0.1:1", "upstreams": ["x:1"], "policy": "nope"},
            "b": {"listen": "127.0.0.1:1", "upstreams": ["y:z"], "colour": "red"},
            "c": {"listen": "127.0.0.1:2", "upstreams": "x:1"},
            "d": {"listen": "127.0.0.1:2", "upstreams": "x:2"},
        }
    }
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError) as err:
        load_file(str(path), config())
    text = str(err.value)
    assert "listeners.a.policy='nope'" in text
    assert "listeners.b.colour: unknown setting" in text
    assert "'y:z'" in text
    assert "two listeners on 127.0.0.1:2" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [("listeners: [", "not valid YAML"), ("other: 1", "expected a mapping"), ("", "expected")],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "amb.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_file(str(path), config())
    with pytest.raises(ValueError, match="cannot read"):
        load_file(str(tmp_path / "missing.yaml"), config())


def members(*weights: int) -> list[Member]:
    return [Member(f"10.0.0.{i}", 80, w) for i, w in enumerate(weights, 1)]


def test_round_robin_follows_weights_smoothly() -> None:
    ms = members(1, 2, 1)
    b = Balancer("round_robin")
    picks = [b.choose(ms).host for _ in range(8)]
    assert Counter(picks) == {"10.0.0.1": 2, "10.0.0.2": 4, "10.0.0.3": 2}
    # smooth: within one cycle the heavy member's turns are interleaved with the others
    assert all(a != c for a, c in zip(picks[:3], picks[1:4], strict=True))


def test_round_robin_follows_a_weight_change_of_a_member_that_stays() -> None:
    """Equal weights rotate through the members in turn; when a member that stays gets a new
    weight (same address), the next picks follow the new weights."""
    c = Cluster("t", "round_robin", EjectPolicy(), RetryBudget(0.2))
    c.set_source("static", [Address(f"10.0.0.{i}", 80) for i in range(3)])
    picks = [c.pick() for _ in range(6)]
    assert [m.host for m in picks if m] == [f"10.0.0.{i % 3}" for i in range(6)]
    assert c.set_source("static", [Address(f"10.0.0.{i}", 80, 1 + 2 * (i == 1)) for i in range(3)])
    counts = Counter(m.host for m in (c.pick() for _ in range(10)) if m)
    assert counts == {"10.0.0.0": 2, "10.0.0.1": 6, "10.0.0.2": 2}


def test_round_robin_over_equal_weights_skips_members_that_are_out() -> None:
    """Equal weights rotate through the members; one down or ejected is passed over and the
    others share its turns evenly; with every member out all are tried again (panic mode)."""
    c = Cluster("t", "round_robin", EjectPolicy(), RetryBudget(0.2))
    c.set_source("static", [Address(f"10.0.0.{i}", 80) for i in range(4)])
    ms = list(c.members.values())
    ms[1].healthy = False
    ms[2].ejected_until = time.monotonic() + 60
    picks = [c.pick() for _ in range(6)]
    assert [m.host for m in picks if m] == ["10.0.0.0", "10.0.0.3"] * 3
    assert c.pick(tried=[ms[0]]) is ms[3]  # a retry never goes back to a tried member
    for m in ms:
        m.healthy = False
    assert Counter(m.host for m in (c.pick() for _ in range(8)) if m) == {
        f"10.0.0.{i}": 2 for i in range(4)
    }
    assert c.panics == 8


def test_least_conn_prefers_the_least_loaded_per_weight() -> None:
    a, b, c = members(1, 1, 2)
    a.active, b.active, c.active = 3, 1, 3  # c: 1.5 per weight unit
    assert Balancer("least_conn").choose([a, b, c]) is b
    b.active = 2
    assert Balancer("least_conn").choose([a, b, c]) is c


def test_p2c_never_picks_the_busiest_of_three() -> None:
    ms = members(1, 1, 1)
    ms[0].active = 100
    b = Balancer("p2c", random.Random(7))
    assert all(b.choose(ms) is not ms[0] for _ in range(200))


def keys_of(cluster: Cluster, keys: list[bytes]) -> dict[bytes, str]:
    out = {}
    for k in keys:
        m = cluster.pick(k)
        assert m is not None
        out[k] = m.key
    return out


def hash_cluster(n: int) -> Cluster:
    c = Cluster("t", "hash", EjectPolicy(), RetryBudget(0.2))
    c.set_source("static", [Address(f"10.0.0.{i}", 80) for i in range(n)])
    return c


def test_consistent_hash_moves_few_keys_when_a_member_joins() -> None:
    keys = [f"user-{i}".encode() for i in range(3000)]
    c = hash_cluster(4)
    before = keys_of(c, keys)
    assert len(set(before.values())) == 4
    c.set_source("static", [Address(f"10.0.0.{i}", 80) for i in range(5)])
    after = keys_of(c, keys)
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "10.0.0.4:80" for k in moved)  # keys only move to the newcomer
    assert 0.1 < len(moved) / len(keys) < 0.32  # about 1/5


def test_consistent_hash_ejection_moves_only_that_members_keys() -> None:
    keys = [f"k{i}".encode() for i in range(2000)]
    c = hash_cluster(4)
    before = keys_of(c, keys)
    victim = c.members["10.0.0.2:80"]
    victim.ejected_until = 1e18
    after = keys_of(c, keys)
    for k in keys:
        if before[k] != "10.0.0.2:80":
            assert after[k] == before[k]
        else:
            assert after[k] != "10.0.0.2:80"
    victim.ejected_until = 0.0
    assert keys_of(c, keys) == before


def test_ejection_time_grows_and_is_capped() -> None:
    m = Member("10.0.0.1", 80)
    policy = EjectPolicy(failures=2, base=1.0, cap=3.0)
    now = 1000.0
    assert not m.record_failure("connect", policy, now)
    assert m.record_failure("connect", policy, now)
    assert m.ejected_until == now + 1.0
    now += 1.5  # back in, fails again at once: longer
    m.record_failure("connect", policy, now)
    assert m.record_failure("connect", policy, now)
    assert m.ejected_until == now + 2.0
    now += 2.5
    m.record_failure("reset", policy, now)
    m.record_failure("reset", policy, now)
    assert m.ejected_until == now + 3.0  # capped
    assert m.ejections == 3 and m.errors == {"connect": 4, "reset": 2}
    now += 100.0  # a long healthy stretch starts again from the base time
    m.record_failure("reset", policy, now)
    m.record_failure("reset", policy, now)
    assert m.ejected_until == now + 1.0


def test_success_resets_the_failure_streak() -> None:
    m = Member("10.0.0.1", 80)
    policy = EjectPolicy(failures=2)
    m.record_failure("connect", policy, 1.0)
    m.record_success()
    assert not m.record_failure("connect", policy, 1.0)


def test_active_checks_use_rise_and_fall() -> None:
    m = Member("10.0.0.1", 80)
    assert m.record_check(False, rise=2, fall=2) is None
    assert m.record_check(False, rise=2, fall=2) is False and not m.healthy
    assert m.record_check(True, rise=2, fall=2) is None
    m.ejected_until = 1e18
    assert m.record_check(True, rise=2, fall=2) is True and m.healthy
    assert m.ejected_until == 0.0  # the check re-admits an ejected member


def test_panic_mode_tries_every_member_when_none_is_available() -> None:
    c = hash_cluster(3)
    for m in c.members.values():
        m.healthy = False
    picked = {c.pick(f"k{i}".encode()).key for i in range(100)}  # type: ignore[union-attr]
    assert len(picked) == 3 and c.panics == 100 and c.in_panic()
    first = c.pick(b"x")
    assert first is not None
    assert c.pick(b"x", [first]) not in (None, first)
    assert c.pick(b"x", list(c.members.values())) is None


def test_tried_healthy_members_are_not_followed_by_unhealthy_ones() -> None:
    c = hash_cluster(2)
    sick, well = c.members.values()
    sick.healthy = False
    assert c.pick(b"k") is well
    assert c.pick(b"k", [well]) is None


def test_membership_changes_keep_member_state() -> None:
    c = hash_cluster(2)
    m = c.members["10.0.0.0:80"]
    m.ejected_until, m.requests = 1e18, 5
    c.set_source("static", [Address("10.0.0.0", 80), Address("10.0.0.9", 80)])
    assert c.members["10.0.0.0:80"] is m and m.ejected(0.0)
    assert "10.0.0.1:80" not in c.members


def test_retry_budget_allows_a_share_plus_a_trickle() -> None:
    """Retries may spend the cap at once, then a share of the requests and a trickle a second;
    requests are turned into tokens when a retry asks, capped as if counted one by one."""
    budget = RetryBudget(ratio=0.5, per_second=1.0, cap=2.0)
    now = budget.stamp
    assert budget.try_spend(now) and budget.try_spend(now)
    assert not budget.try_spend(now)
    budget.record_request()
    budget.record_request()
    assert budget.try_spend(now) and not budget.try_spend(now)
    assert budget.try_spend(now + 1.0)

    # more requests than the cap would hold earn at most the cap; a new ratio counts from then
    for _ in range(10):
        budget.record_request()
    budget.set_ratio(0.0)
    budget.record_request()
    assert budget.tokens == 2.0
    assert budget.try_spend(now + 1.0) and budget.try_spend(now + 1.0)
    assert not budget.try_spend(now + 1.0)


def test_readme_settings_table_matches_the_config() -> None:
    from sidecars.runtime.settings import env_name, flag_name, specs

    readme = (Path(__file__).resolve().parents[2] / "sidecars/ambassador/README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in readme.splitlines()
        if line.startswith("| `AMBASSADOR_")
    }
    defaults = SIDECAR._defaults()
    expected = set()
    for name, spec in specs(SIDECAR.config):
        var = env_name("AMBASSADOR", name)
        expected.add(var)
        cells = [c.strip() for c in rows[var].split("|")[1:-1]]
        assert cells == [
            f"`{var}`",
            f"`{flag_name(name)}`",
            f"`{defaults.get(name, spec.default)}`",
            spec.help,
        ]
    assert set(rows) == expected
