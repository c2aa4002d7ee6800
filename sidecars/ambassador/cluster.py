"""A cluster: its members from every source, the balancer, panic mode and the retry budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from sidecars.ambassador.balancer import Balancer
from sidecars.ambassador.members import EjectPolicy, Member
from sidecars.ambassador.spec import Address

# a constant of the compiled module: `time.monotonic` is an attribute lookup in the module at
# each call (once per connection or request in pick)
_MONOTONIC: Final = time.monotonic


class RetryBudget:
    """Retries may use `ratio` of the requests plus `per_second` a second (a token bucket), so a
    failing cluster is not hit by a retry storm."""

    def __init__(self, ratio: float, per_second: float = 10.0, cap: float = 100.0) -> None:
        self.ratio, self.per_second, self.cap = ratio, per_second, cap
        self.tokens = cap
        self.stamp = time.monotonic()
        # requests not yet turned into tokens: the hot path adds 1 (no call per request) and
        # a retry's try_spend converts them (capping once is capping after each addition)
        self.requests = 0

    def record_request(self) -> None:
        self.requests += 1

    def set_ratio(self, ratio: float) -> None:
        """A new share for the requests from now on (those counted so far earn at the old)."""
        self.tokens = min(self.cap, self.tokens + self.requests * self.ratio)
        self.requests, self.ratio = 0, ratio

    def try_spend(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        earned = self.requests * self.ratio + (now - self.stamp) * self.per_second
        self.tokens = min(self.cap, self.tokens + earned)
        self.requests, self.stamp = 0, now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Cluster:
    """Members by key; state (health, ejection, counters) survives re-resolution because a member
    that is still listed keeps its object."""

    def __init__(
        self,
        name: str,
        policy: str,
        eject: EjectPolicy,
        budget: RetryBudget,
        on_change: Callable[[Cluster], None] | None = None,
    ) -> None:
        self.name = name
        self.balancer = Balancer(policy)
        self.eject = eject
        self.budget = budget
        self.members: dict[str, Member] = {}
        self.order: list[Member] = []  # the members' values, in order (for rotation)
        self._by_source: dict[str, list[Address]] = {}
        self.panics = 0
        self.retries = 0
        self.on_change = on_change
        self.slow_start = 0.0  # seconds of a member's ramp; 0: none
        self.member_limit = 0  # most `active` per member; 0: none
        self.ramp_until = 0.0  # some member ramps until then (monotonic clock)
        # `pick` takes its careful path (limits, ramps) before then: +inf with a limit
        self.careful_until = 0.0
        self.at_limit = 0  # connections or requests refused: every member at its limit
        self.primed = False  # the first pass over the sources is done: new members ramp
        self.waits = 0  # connections or requests that waited for a member under its limit
        self.full = False  # the last careful pick found every member at its limit

    def set_load(self, slow_start: float, member_limit: int) -> None:
        """Apply the slow start and per-member limit settings."""
        self.slow_start, self.member_limit = slow_start, member_limit
        if not slow_start:
            self.ramp_until = 0.0
        self.careful_until = float("inf") if member_limit else self.ramp_until

    def warm(self, member: Member, start: float) -> None:
        """`member` joins or comes back at `start`: its share grows from then on."""
        if self.slow_start:
            member.ramp_from = start
            self.ramp_until = max(self.ramp_until, start + self.slow_start)
            self.careful_until = max(self.careful_until, self.ramp_until)

    def set_source(self, source: str, addresses: Iterable[Address]) -> bool:
        """Replace what `source` contributes; True when the membership changed."""
        self._by_source[source] = list(addresses)
        wanted: dict[str, tuple[Address, str]] = {}
        for label, addrs in self._by_source.items():
            for addr in addrs:
                wanted.setdefault(addr.key, (addr, label))
        old = self.members
        members: dict[str, Member] = {}
        changed = list(wanted) != list(old)
        # the members of the first pass over the sources start at full share
        joined = time.monotonic() if self.primed else 0.0
        for key, (addr, label) in wanted.items():
            member = old.get(key)
            if member is None:
                member = Member(addr.host, addr.port, addr.weight, source=label)
                if joined:
                    self.warm(member, joined)
            elif member.weight != addr.weight:  # a member kept is the same object: compare now
                changed = True
            member.weight, member.source = addr.weight, label
            members[key] = member
        self.members, self.order = members, list(members.values())
        if changed:
            self.balancer.rebuild(list(members.values()))
            if self.on_change is not None:
                self.on_change(self)
        return changed

    def drop_source(self, source: str) -> None:
        if source in self._by_source:
            self.set_source(source, [])
            del self._by_source[source]

    def available(self, now: float | None = None) -> list[Member]:
        now = time.monotonic() if now is None else now
        return [m for m in self.members.values() if m.available(now)]

    def pick(self, key: bytes = b"", tried: Iterable[Member] = ()) -> Member | None:
        """A member for one attempt, never one in `tried`. When no member is available (all
        down or ejected) every member is tried rather than failing everything (panic mode)."""
        now = _MONOTONIC()
        if now < self.careful_until:
            return self._pick_careful(key, tried, now)
        balancer = self.balancer
        if balancer.rotating and not tried:
            found = balancer.rotate(self.order, now)
            if found is not None:
                return found
        members = self.members.values()
        if tried:
            skip = {id(m) for m in tried}
            candidates = [m for m in members if m.available(now) and id(m) not in skip]
        else:  # a loop, not a comprehension: no function object made per request
            candidates = []
            for m in members:
                if m.healthy and m.ejected_until <= now:
                    candidates.append(m)
        if not candidates:
            if any(m.available(now) for m in members):
                return None  # the healthy ones were all tried already
            skip = {id(m) for m in tried}
            candidates = [m for m in members if id(m) not in skip]
            if not candidates:
                return None
            self.panics += 1
        return balancer.choose(candidates, key)

    def _pick_careful(self, key: bytes, tried: Iterable[Member], now: float) -> Member | None:
        """`pick` while a member is at its limit or ramping: members at the limit are
        skipped, ramping ones weigh their share of the ramp so far."""
        skip = {id(m) for m in tried}
        members = [m for m in self.members.values() if id(m) not in skip]
        limit = self.member_limit
        self.full = False
        if limit:
            members = [m for m in members if m.active < limit]
            if not members:
                self.full = bool(self.members)
                return None
        candidates = [m for m in members if m.available(now)]
        if not candidates:
            if not members or any(m.available(now) for m in self.members.values()):
                return None  # the available ones were tried already or are at the limit
            candidates = members
            self.panics += 1
        if now < self.ramp_until:
            return self.balancer.ramped(candidates, key, now, self.slow_start)
        return self.balancer.choose(candidates, key)

    def failed(self, member: Member, kind: str) -> bool:
        """Record a failure; True when it ejected the member (its ramp starts at the end)."""
        ejected = member.record_failure(kind, self.eject)
        if ejected:
            self.warm(member, member.ejected_until)
        return ejected

    def back_off(self, member: Member, seconds: float) -> None:
        """The member asked (Retry-After) not to be sent anything for `seconds`."""
        until = time.monotonic() + seconds
        member.backoff_until = max(member.backoff_until, until)
        if until > member.ejected_until:
            member.ejected_until = until
            self.warm(member, until)
        member.backoffs += 1

    def in_panic(self) -> bool:
        return bool(self.members) and not self.available()

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "policy": self.balancer.policy,
            "panic": self.in_panic(),
            "members": [m.snapshot(now, self.slow_start) for m in self.members.values()],
        }
