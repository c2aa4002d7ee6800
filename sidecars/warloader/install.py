"""Install one source into the destination: stage, verify, publish atomically, record."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sidecars.warloader import beneath, fsops, partial, staging, state
from sidecars.warloader.copier import Progress, copy_hashing, copy_plain
from sidecars.warloader.errors import (
    DestinationError,
    DigestMismatch,
    LoadError,
    SourceConfigError,
    SourceError,
    copy_error,
    describe,
    dest_error,
)
from sidecars.warloader.remote import HttpPolicy, Validators
from sidecars.warloader.safety import Limits
from sidecars.warloader.sources import Source
from sidecars.warloader.tree import copy_tree, fingerprint

if TYPE_CHECKING:
    import aiohttp

    from sidecars.warloader.registry import Blob, Registry

_ZIP_NAMES = (".war", ".jar", ".ear", ".zip")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything an install needs besides the source itself."""

    dest: Path
    extract: bool
    modes: fsops.Modes
    limits: Limits
    http: HttpPolicy


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an install did: `installed` or left it `unchanged`, and why."""

    name: str
    source: str
    action: str
    why: str
    sha256: str
    size: int
    seconds: float


@dataclass(slots=True)
class _Job:
    src: Source
    name: str
    extract: bool
    settings: str
    previous: state.Record | None
    progress: Progress
    started: float
    dfd: int  # the destination, open
    pin: str | None = None  # the sha256 the content must have: #sha256= or the OCI layer's
    blob: Blob | None = None  # an oci:// source's resolved layer

    def outcome(self, action: str, why: str, sha256: str = "", size: int = 0) -> Outcome:
        seconds = time.monotonic() - self.started
        return Outcome(self.name, str(self.src), action, why, sha256, size, seconds)


class Installer:
    """Installs sources under one Plan; HTTP goes through the given session."""

    def __init__(
        self,
        plan: Plan,
        session: aiohttp.ClientSession | None,
        auth: Callable[[Source], Mapping[str, str]],
        log: logging.Logger,
    ) -> None:
        self.plan, self.session, self.auth, self.log = plan, session, auth, log
        self.registry: Registry | None = None  # set when an oci:// source is configured

    def target(self, src: Source) -> str:
        return src.target_name(self._extract(src))

    def _extract(self, src: Source) -> bool:
        return src.extracting(self.plan.extract)

    async def install(self, src: Source, progress: Progress) -> Outcome:
        """Install `src` unless the same content is already in place."""
        dest, extracting = self.plan.dest, self._extract(src)
        name = src.target_name(extracting)
        m = self.plan.modes
        settings = f"extract={extracting};mode={m.file_mode:o}/{m.dir_mode:o};owner={m.uid}:{m.gid}"
        if src.oci is not None:
            settings += f";layer={src.oci.layer or ''}"
        dfd = await staging.thread(progress, fsops.ensure_dir, dest)
        try:
            lock_fd = await self._lock(dfd, dest, name, progress)
            try:
                now = time.monotonic()
                job = _Job(src, name, extracting, settings, None, progress, now, dfd, src.sha256)
                return await self._locked(job)
            finally:
                os.close(lock_fd)
        finally:
            os.close(dfd)

    async def _locked(self, job: _Job) -> Outcome:
        src, name, dfd, progress = job.src, job.name, job.dfd, job.progress
        keep = partial.KEEP if src.is_url else ()
        await staging.thread(progress, fsops.remove_leftovers, dfd, name, keep)
        prev = await staging.thread(progress, state.read, dfd, name)
        usable = prev if prev and prev.settings == job.settings else None
        if usable and not await staging.thread(progress, usable.intact, job.dfd):
            self.log.warning(
                "%s was changed since it was installed (files modified, added or removed):"
                " installing it again",
                name,
                extra={"artifact": name},
            )
            usable = None
        job.previous = usable
        if src.oci is not None:
            if usable and src.oci.digest and usable.source_id.startswith(f"oci:{src.oci.digest}:"):
                return job.outcome("unchanged", "pinned manifest already installed", usable.sha256)
            job.blob = await self._resolve(src)
            job.pin = job.blob.layer.digest.removeprefix("sha256:")
        if usable and job.pin and usable.sha256 == job.pin:
            what = "layer" if src.oci is not None else "pinned"
            return job.outcome("unchanged", f"{what} digest already installed", job.pin)
        if src.is_url:
            return await self._from_url(job)
        return await staging.thread(progress, self._from_path, job)

    async def _lock(self, dfd: int, dest: Path, name: str, progress: Progress) -> int:
        """Wait (without holding a thread) until no other loader works on `name`."""
        waiting = False
        while (fd := await staging.thread(progress, fsops.try_lock, dfd, dest, name)) is None:
            if not waiting:
                self.log.info("waiting for another loader working on %s", name)
                waiting = True
            await asyncio.sleep(0.5)
        return fd

    async def _resolve(self, src: Source) -> Blob:
        assert self.registry is not None and src.oci is not None
        try:
            async with asyncio.timeout(self.plan.http.deadline):
                return await self.registry.resolve(src.oci, str(src))
        except TimeoutError:
            raise SourceError(
                f"{src}: manifest not resolved within {self.plan.http.deadline:g}s "
                "(WARLOADER_DOWNLOAD_DEADLINE)"
            ) from None

    # --- path sources (run in a worker thread) -------------------------------------------

    def _from_path(self, job: _Job) -> Outcome:
        path = Path(job.src.location)
        sfd = _open_source(path)
        try:
            st = os.fstat(sfd)
            if stat.S_ISDIR(st.st_mode):
                return self._from_dir(job, path, sfd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(f"cannot read {path}: not a regular file or a directory")
            source_id = f"file:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
            prev = job.previous
            if prev and not job.pin and prev.source_id == source_id:
                return job.outcome("unchanged", "source file unchanged", prev.sha256)
            job.progress.total = st.st_size
            tmp, dfd = staging.create_temp(job.dfd, self.plan.dest, job.name)
            try:
                try:
                    size, sha = self._fill(sfd, dfd, job, st.st_mode, str(path))
                finally:
                    os.close(dfd)
                return self._finish(job, tmp, sha, size, source_id, Validators())
            finally:
                beneath.clear(job.dfd, tmp)
        finally:
            os.close(sfd)

    def _fill(self, sfd: int, dfd: int, job: _Job, mode: int, label: str) -> tuple[int, str]:
        """Copy into the temp file, hashing only when a digest must be checked."""
        try:
            if job.pin:
                size, sha = copy_hashing(sfd, dfd, job.progress)
            else:
                size, sha = copy_plain(sfd, dfd, job.progress), ""
            if not job.extract:
                fsops.apply_modes(dfd, self.plan.modes, mode)
            os.fsync(dfd)
        except OSError as exc:
            raise copy_error(exc, label, str(self.plan.dest / job.name)) from None
        return size, sha

    def _from_dir(self, job: _Job, path: Path, sfd: int) -> Outcome:
        if job.pin:
            raise SourceConfigError(f"{path} is a directory: sha256 pins apply to files")
        if job.extract:
            raise SourceConfigError(f"{path} is a directory: there is nothing to extract")
        try:
            source_id = "tree:" + fingerprint(sfd)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {describe(exc)}") from None
        if job.previous and job.previous.source_id == source_id:
            return job.outcome("unchanged", "source tree unchanged")
        stage, root = staging.create_stage(job.dfd, self.plan.dest, job.name)
        try:
            try:
                size = copy_tree(sfd, str(path), root, self.plan.modes, job.progress)
                fsops.sync_tree(root)
            except OSError as exc:
                raise copy_error(exc, str(path), str(self.plan.dest / job.name)) from None
            finally:
                os.close(root)
            return self._publish(job, stage, "", size, source_id, Validators())
        finally:
            beneath.clear(job.dfd, stage)

    # --- URL sources ---------------------------------------------------------------------

    async def _from_url(self, job: _Job) -> Outcome:
        from sidecars.warloader.fetch import download  # aiohttp: only with URL sources

        assert self.session is not None
        dest, name, prev = self.plan.dest, job.name, job.previous
        known = None
        if prev and not job.pin and (prev.etag or prev.last_modified):
            known = Validators(prev.etag, prev.last_modified)
        url, policy, headers = job.src.location, self.plan.http, None
        if job.blob is not None:  # at most the layer's size: a longer body is refused early
            url, headers = job.blob.url, job.blob.headers
            policy = replace(policy, max_size=min(policy.max_size, job.blob.layer.size))
        try:
            fd, sink, resume = await staging.thread(
                job.progress, partial.open_sink, job.dfd, dest, name, url, job.progress
            )
        except OSError as exc:
            raise dest_error(exc, str(dest)) from None
        keep = False  # keep the partial bytes for the next run to resume?
        try:
            try:
                got = await download(
                    self.session,
                    url,
                    str(job.src),
                    sink,
                    policy,
                    self.auth(job.src) if headers is None else headers,
                    known,
                    self.log,
                    resume=resume,
                    on_fresh=functools.partial(partial.remember, job.dfd, name, url),
                )
                if got.not_modified and prev:
                    return job.outcome("unchanged", "server answered 304", prev.sha256)
                modes = None if job.extract else self.plan.modes
                await staging.thread(job.progress, sink.finish)
                await staging.thread(job.progress, staging.chmod_fsync, fd, dest, modes)
            except SourceError as exc:
                keep = exc.retryable and sink.size > 0
                raise
            except asyncio.CancelledError:
                keep = True  # whatever arrived is worth resuming next time
                raise
            except OSError as exc:
                raise dest_error(exc, str(dest / name)) from None
            finally:
                sink.close()
                os.close(fd)
            v = got.validators
            source_id = f"url:{v.etag}:{v.last_modified}"
            if job.blob is not None:
                source_id = f"oci:{job.blob.manifest_digest}:{job.blob.layer.digest}"
            tmp = partial.names(name)[0]
            return await staging.thread(
                job.progress, self._finish, job, tmp, got.sha256, got.size, source_id, v
            )
        finally:
            if not keep:
                await staging.thread(job.progress, partial.discard, job.dfd, name)

    # --- verify and publish (worker thread) ----------------------------------------------

    def _finish(
        self, job: _Job, tmp: str, sha: str, size: int, source_id: str, v: Validators
    ) -> Outcome:
        if job.pin and sha != job.pin:
            raise DigestMismatch(
                f"{job.src}: sha256 is {sha}, expected {job.pin}; nothing installed"
            )
        dest, prev = self.plan.dest, job.previous
        if prev and sha and prev.sha256 == sha:
            new = replace(prev, source_id=source_id, etag=v.etag, last_modified=v.last_modified)
            staging.write_record(job.dfd, dest, new)
            return job.outcome("unchanged", "same content already installed", sha, size)
        if not job.extract:
            if job.name.lower().endswith(_ZIP_NAMES):
                fd = staging.open_staged(job.dfd, dest, tmp)
                try:
                    staging.check_zip(fd, job.name, self.plan.limits.max_files)
                finally:
                    os.close(fd)
            return self._publish(job, tmp, sha, size, source_id, v)
        from sidecars.warloader.extract import extract  # tarfile, zipfile: only when unpacking

        stage, root = staging.create_stage(job.dfd, dest, job.name)
        try:
            archive = staging.open_staged(job.dfd, dest, tmp)
            try:
                extract(archive, root, self.plan.limits, self.plan.modes, job.progress)
                fsops.sync_tree(root)
            except OSError as exc:
                raise dest_error(exc, str(dest / job.name)) from None
            finally:
                os.close(archive)
                os.close(root)
            return self._publish(job, stage, sha, size, source_id, v)
        finally:
            beneath.clear(job.dfd, stage)

    def _publish(
        self, job: _Job, staged: str, sha: str, size: int, source_id: str, v: Validators
    ) -> Outcome:
        dest = self.plan.dest
        fsops.publish(job.dfd, staged, job.name, dest)
        target = dest / job.name
        installed = state.installed_id(job.dfd, job.name)
        if installed is None:
            raise DestinationError(f"cannot write {target}: removed right after it was installed")
        record = state.Record(
            job.name,
            str(job.src),
            sha,
            source_id,
            v.etag,
            v.last_modified,
            installed,
            job.settings,
            state.manifest(job.dfd, job.name),
        )
        staging.write_record(job.dfd, dest, record)
        return job.outcome("installed", "new content", sha, size)


def _open_source(path: Path) -> int:
    """Open a path source beneath its own directory: links are followed while they stay inside
    it (a ConfigMap's `..data`), never out of it; a FIFO or device does not block the open."""
    try:
        parent = beneath.open_dir(str(path.parent))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {describe(exc)}") from None
    try:
        return beneath.open_at(
            parent, path.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, links=True
        )
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.ELOOP):
            raise SourceError(
                f"cannot read {path}: it is a link that leaves {path.parent} (not followed)"
            ) from None
        raise SourceError(f"cannot read {path}: {describe(exc)}") from None
    finally:
        os.close(parent)


__all__ = ["Installer", "LoadError", "Outcome", "Plan"]
