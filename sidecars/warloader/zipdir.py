"""Count a zip's central directory entries before zipfile parses them all into memory."""

from __future__ import annotations

import os
import struct
import zipfile
from typing import IO

from sidecars.warloader.errors import UnsafeArchive

MAX_ZIP_DIRECTORY = 64 << 20
_CD_ENTRY = struct.Struct("<4s42x")  # a central directory entry's fixed part: 46 bytes
_CD_SIZES = struct.Struct("<HHH")  # its name, extra and comment lengths, at offset 28


def bound_zip_directory(archive: IO[bytes], max_files: int) -> None:
    """zipfile reads the whole central directory into memory and makes an object per entry,
    however many there are: count them first, reading only each entry's fixed part, and
    refuse a directory over MAX_ZIP_DIRECTORY bytes or max_files entries."""
    try:
        end = zipfile._EndRecData(archive)  # type: ignore[attr-defined]
    except OSError:
        end = None
    if not end:
        return  # zipfile says what is wrong
    size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    if size > MAX_ZIP_DIRECTORY:
        raise UnsafeArchive(
            f"its zip directory claims {size} bytes (more than {MAX_ZIP_DIRECTORY})"
        )
    start = end[zipfile._ECD_LOCATION] - size - offset  # type: ignore[attr-defined]
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    archive.seek(max(start + offset, 0))
    seen = entries = 0
    while seen < size:
        fixed = archive.read(_CD_ENTRY.size)
        if len(fixed) < _CD_ENTRY.size or not fixed.startswith(b"PK\x01\x02"):
            break  # zipfile reports the corruption
        entries += 1
        if entries > max_files:
            raise UnsafeArchive(f"more than {max_files} entries")
        skip = sum(_CD_SIZES.unpack_from(fixed, 28))
        archive.seek(skip, os.SEEK_CUR)
        seen += _CD_ENTRY.size + skip
    archive.seek(0)
