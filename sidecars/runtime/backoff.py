"""Capped exponential backoff with full jitter, shared by every retry loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """Delays base*2^n capped at `cap`, each drawn uniformly from [0, delay] (full jitter) so
    many sidecars retrying against one server do not retry in lockstep."""

    base: float = 0.1
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2.0 ** min(self.attempt, 62)))
        self.attempt += 1
        import random  # here: a sidecar that never retries does not load it

        return random.uniform(0.0, delay)

    def reset(self) -> None:
        self.attempt = 0
