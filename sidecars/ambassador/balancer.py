"""Choosing a member: round robin, least connections, power of two choices, consistent hash."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

from sidecars.ambassador.members import Member, ramp_share

VNODES = 100  # ring points per unit of weight: keys move ~1/n when one of n members changes
MAX_POINTS = 5000  # per member, so a weight of 1000 does not build a million-point ring


def _hash(data: bytes) -> int:
    import hashlib  # here: a listener that never hashes is spared its 0.7 MiB of memory

    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """A consistent hash ring over every member (healthy or not), so that ejecting a member
    moves only its own keys, and only while it is out."""

    def __init__(self, members: Sequence[Member]) -> None:
        points: list[tuple[int, int]] = []
        self.members = list(members)
        for index, member in enumerate(self.members):
            for v in range(min(VNODES * member.weight, MAX_POINTS)):
                points.append((_hash(f"{member.key}#{v}".encode()), index))
        points.sort()
        self.hashes = [h for h, _ in points]
        self.owners = [i for _, i in points]

    def lookup(self, key: bytes, allowed: set[int]) -> Member | None:
        """The first member clockwise from the key's point whose id() is in `allowed`."""
        if not self.hashes:
            return None
        start = bisect.bisect(self.hashes, _hash(key)) % len(self.hashes)
        seen: set[int] = set()
        n = len(self.hashes)
        for step in range(n):
            index = self.owners[(start + step) % n]
            if index in seen:
                continue
            seen.add(index)
            member = self.members[index]
            if id(member) in allowed:
                return member
            if len(seen) == len(self.members):
                break
        return None


class Balancer:
    """One policy over a changing member list; `choose` gets the members allowed right now."""

    def __init__(self, policy: str, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.ring = Ring([])
        self._rr = -1
        self.uniform = False  # every member has the same weight (known from rebuild)
        self.rotating = False  # round robin over equal weights: `rotate` may pick

    def rebuild(self, members: Sequence[Member]) -> None:
        """Called when membership or a weight changes (not when health changes)."""
        if self.policy == "hash":
            self.ring = Ring(members)
        self.uniform = len({m.weight for m in members}) <= 1
        self.rotating = self.uniform and self.policy == "round_robin"

    def rotate(self, members: list[Member], now: float) -> Member | None:
        """Round robin over equal weights without a list of candidates: the next member in
        turn that is healthy and not ejected at `now`, None when there is none."""
        n = len(members)
        for _ in range(n):
            self._rr += 1
            m = members[self._rr % n]
            if m.healthy and m.ejected_until <= now:
                return m
        return None

    def choose(self, candidates: Sequence[Member], key: bytes = b"") -> Member:
        if len(candidates) == 1:
            return candidates[0]
        policy = self.policy
        if policy == "hash":
            found = self.ring.lookup(key, {id(m) for m in candidates})
            if found is not None:
                return found
            return candidates[_hash(key) % len(candidates)]
        if policy == "least_conn":
            return self._least(candidates)
        if policy == "p2c":
            return self._p2c(candidates)
        if self.uniform:  # equal weights: smooth weighted round robin is plain rotation
            self._rr += 1
            return candidates[self._rr % len(candidates)]
        # Smooth weighted round robin (inline, one call less per request):
        # interleaves heavy members instead of bursting them.
        total = 0
        best: Member | None = None
        for m in candidates:
            m.current_weight += m.weight
            total += m.weight
            if best is None or m.current_weight > best.current_weight:
                best = m
        assert best is not None
        best.current_weight -= total
        return best

    def ramped(self, candidates: Sequence[Member], key: bytes, now: float, span: float) -> Member:
        """`choose` while some member is in its slow start: each weighs its weight times the
        share of `span` since its ramp began (at least RAMP_FLOOR), drawn at random (round robin)
        or as the less loaded of two such draws (least_conn, p2c). Hashing keeps its ring."""
        if self.policy == "hash" or len(candidates) == 1:
            return self.choose(candidates, key)
        weights = [m.weight * ramp_share(m, now, span) for m in candidates]
        if self.policy == "round_robin":
            return self.rng.choices(candidates, weights)[0]
        i, j = self.rng.choices(range(len(candidates)), weights, k=2)
        a, b = candidates[i], candidates[j]
        return a if a.active * weights[j] <= b.active * weights[i] else b

    def _least(self, candidates: Sequence[Member]) -> Member:
        # Ties rotate so equal members share the load instead of the first one taking it all.
        self._rr += 1
        n = len(candidates)
        best = candidates[self._rr % n]
        for i in range(1, n):
            m = candidates[(self._rr + i) % n]
            if m.active * best.weight < best.active * m.weight:
                best = m
        return best

    def _p2c(self, candidates: Sequence[Member]) -> Member:
        weights = [m.weight for m in candidates]
        a, b = self.rng.choices(candidates, weights, k=2)
        if a is b:
            b = self.rng.choice([m for m in candidates if m is not a])
        return a if a.active * b.weight <= b.active * a.weight else b
