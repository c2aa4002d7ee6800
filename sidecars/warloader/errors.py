"""The ways loading can fail, each with its own documented exit code and one-line message."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_SOURCE = 3
EXIT_DIGEST = 4
EXIT_ARCHIVE = 5
EXIT_DEST = 6

# errno values that mean "the destination cannot take the data", whichever call raised them.
DEST_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)


class LoadError(Exception):
    """A failure that ends a load with `exit_code`; str() is the one line that explains it."""

    exit_code = EXIT_FAILURE
    kind = "failure"
    retryable = False


class SourceError(LoadError):
    """The source is missing, unreachable, refused us, or is larger than allowed."""

    exit_code = EXIT_SOURCE
    kind = "source_unavailable"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class DigestMismatch(LoadError):
    """The content's sha256 is not the pinned one; nothing was installed."""

    exit_code = EXIT_DIGEST
    kind = "digest_mismatch"


class UnsafeArchive(LoadError):
    """An archive (or source tree) would escape the destination, breaks a limit, or is corrupt."""

    exit_code = EXIT_ARCHIVE
    kind = "unsafe_archive"


class DestinationError(LoadError):
    """The destination cannot be written: read-only, full, or not permitted."""

    exit_code = EXIT_DEST
    kind = "destination_not_writable"


class SourceConfigError(LoadError):
    """A source turned out to be unusable as configured (e.g. a digest pin on a directory)."""

    exit_code = EXIT_CONFIG
    kind = "bad_configuration"


class FlushFailed(OSError):
    """Flushing a staged file to disk failed: always the destination's fault."""


def describe(exc: OSError) -> str:
    """`strerror` (or the exception text) without the path noise Python adds."""
    return exc.strerror or str(exc)


def dest_error(exc: OSError, what: str) -> DestinationError:
    """Wrap an OSError raised while writing `what` into the destination."""
    return DestinationError(f"cannot write {what}: {describe(exc)}")


def copy_error(exc: OSError, source: str, target: str) -> LoadError:
    """Blame the destination for errors only a writer gets, the source for the rest."""
    if exc.errno in DEST_ERRNOS or isinstance(exc, FlushFailed):
        return dest_error(exc, target)
    return SourceError(f"cannot read {source}: {describe(exc)}")
