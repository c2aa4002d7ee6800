"""Supervised background tasks: one that dies takes the sidecar down; a stalled loop fails
/healthz. Either way the kubelet restarts the container instead of it running on half-dead."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Loop:
    """A supervised task and, when it promises to `beat` every `every` seconds, its last beat."""

    name: str
    every: float | None
    last: float


class Supervisor:
    """Watches every task started with `spawn` in this sidecar.

    A task that raises, or returns although it should run until the drain (not `finite`),
    is logged in one line naming it and the error (the traceback at debug level) and sets
    `failed`: the runtime then exits 1. Cancelled tasks, and any ending once `closing` is
    set (drain, exit), are normal."""

    def __init__(self, log: logging.Logger, stall_after: float) -> None:
        self.log, self.stall_after = log, stall_after
        self.closing = False
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self.loops: dict[asyncio.Task[Any], _Loop] = {}

    def spawn(
        self,
        name: str,
        coro: Coroutine[Any, Any, T],
        *,
        finite: bool = False,
        beat_every: float | None = None,
    ) -> asyncio.Task[T]:
        loop = _Loop(name, beat_every, time.monotonic())
        context = contextvars.copy_context()
        context.run(_current.set, loop)  # `beat()` inside the task (and its children) finds it
        task = context.run(asyncio.get_running_loop().create_task, coro)
        self.loops[task] = loop
        task.add_done_callback(lambda t: self._ended(t, finite))
        return task

    def _ended(self, task: asyncio.Task[Any], finite: bool) -> None:
        name = self.loops.pop(task).name
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and (finite or self.closing):
            return
        why = "returned, but it should run until the drain" if exc is None else describe(exc)
        if self.closing:
            self.log.error("background task %s failed while stopping: %s", name, why)
        elif self.failure is None:
            self.failure = f"{name}: {why}"
            self.log.error(
                "background task %s died: %s; exiting so that the container is restarted",
                name,
                why,
                extra={"task": name},
            )
            self.failed.set()
        if exc is not None:
            self.log.debug("traceback of background task %s", name, exc_info=exc)

    def stalled(self) -> str | None:
        """Why the sidecar is not alive: the first loop past its bound, or the dead task."""
        if self.failure is not None:
            return f"background task {self.failure}"
        now = time.monotonic()
        for loop in self.loops.values():
            if loop.every is not None and now - loop.last > loop.every + self.stall_after:
                return f"{loop.name} made no progress for {now - loop.last:.0f}s"
        return None


def describe(exc: BaseException) -> str:
    """`Type: message` of the first real error (exception groups unwrapped)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_supervisor: contextvars.ContextVar[Supervisor | None] = contextvars.ContextVar(
    "supervisor", default=None
)
_current: contextvars.ContextVar[_Loop | None] = contextvars.ContextVar("loop", default=None)


def install(supervisor: Supervisor) -> None:
    """Make `supervisor` the one `spawn` uses in this task and every task created from it."""
    _supervisor.set(supervisor)


def spawn(
    name: str,
    coro: Coroutine[Any, Any, T],
    *,
    finite: bool = False,
    beat_every: float | None = None,
) -> asyncio.Task[T]:
    """Start a long-lived background task under the sidecar's supervision.

    `name` says what it is in the one log line if it dies. `finite`: it may return (a start-up
    job); its error is still fatal. `beat_every`: it calls `beat()` at least this often, and
    /healthz fails when it has not for `beat_every` + the stall timeout. Outside a sidecar (a
    test driving a component alone) this is a plain task."""
    supervisor = _supervisor.get()
    if supervisor is None:
        return asyncio.get_running_loop().create_task(coro)
    return supervisor.spawn(name, coro, finite=finite, beat_every=beat_every)


def beat() -> None:
    """Mark progress of the supervised loop this code runs in (nothing outside one)."""
    loop = _current.get()
    if loop is not None:
        loop.last = time.monotonic()
