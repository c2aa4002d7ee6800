"""Hostile archives: headers that claim huge sizes, header chains, sparse maps and bombs are
refused with one line and exit 5, in bounded memory, before their bytes are read."""

from __future__ import annotations

import asyncio
import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from sidecars.warloader.errors import EXIT_ARCHIVE
from tests.warloader_support import Measured, run_loader, run_measured, tar_link, tar_with

pytestmark = pytest.mark.integration

GIB = 1 << 30


def gz_stream(path: Path, head: bytes, zeros: int) -> None:
    """Write gzip(head + `zeros` zero bytes + two end blocks) to `path`, streaming."""
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(4 << 20)
    with path.open("wb") as f:
        f.write(z.compress(head))
        left = zeros
        while left > 0:
            f.write(z.compress(chunk[: min(left, len(chunk))]))
            left -= len(chunk)
        f.write(z.compress(bytes(1024)))
        f.write(z.flush())


def unpack_measured(tmp_path: Path, archive: Path, **env: str) -> tuple[Measured, str]:
    """Extract `archive` in a real loader process: it must fail with exit 5 and one error
    line, and leave nothing installed; the measurements and that line."""
    run = run_measured(
        {
            "WARLOADER_SOURCES": f"{archive}#extract={env.pop('extract', 'true')}",
            "WARLOADER_DEST": str(tmp_path / "d"),
            **env,
        }
    )
    assert run.code == EXIT_ARCHIVE, run.stderr
    [line] = run.errors()
    assert not (tmp_path / "d" / "site").exists()
    return run, line


async def unpack_refused(tmp_path: Path, archive: Path) -> str:
    """Extract `archive` in-process: exit 5, one error line (returned), nothing installed."""
    run = await run_loader(
        {"WARLOADER_SOURCES": f"{archive}#extract=true", "WARLOADER_DEST": str(tmp_path / "d")}
    )
    assert run.code == EXIT_ARCHIVE, run.logs.messages()
    [line] = run.errors()
    assert not (tmp_path / "d" / "site").exists()
    return line


def header(kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type = kind
    info.size = size
    return info.tobuf(
        format=tarfile.USTAR_FORMAT if kind == tarfile.XHDTYPE else tarfile.GNU_FORMAT
    )


@pytest.mark.parametrize(
    "kind",
    [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK],
    ids=["pax", "gnu-longname", "gnu-longlink"],
)
def test_a_header_claiming_a_gib_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    """A .tar.gz of a few MiB whose first extended header claims 1 GiB: tarfile would read all
    of it into memory (1 GiB RSS). The claim is refused unread: exit 5, one line, small RSS."""
    bomb = tmp_path / "site.tar.gz"
    gz_stream(bomb, header(kind, GIB), GIB)
    run, line = unpack_measured(tmp_path, bomb)
    assert f"claims {GIB} bytes" in line, line
    assert run.max_rss_mib < 150, f"peak RSS {run.max_rss_mib:.0f} MiB"


def test_a_member_declaring_more_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A member whose header declares more than WARLOADER_MAX_EXTRACT_SIZE is refused before
    its data is decompressed (no 1 GiB of zeros inflated first)."""
    info = tarfile.TarInfo("big.bin")
    info.size = GIB
    bomb = tmp_path / "site.tar.gz"
    gz_stream(bomb, info.tobuf(format=tarfile.GNU_FORMAT), GIB)
    run, line = unpack_measured(tmp_path, bomb, WARLOADER_MAX_EXTRACT_SIZE="64MiB")
    assert "unpacks to more than 67108864 bytes" in line, line
    assert run.seconds < 5, f"took {run.seconds:.1f}s: the data was inflated before the refusal"


async def test_a_chain_of_extended_headers_is_refused(tmp_path: Path) -> None:
    """Thousands of pax headers in front of one member: tarfile recurses once per header (a
    traceback at the recursion limit). Refused past a few, with exit 5."""
    one = header(tarfile.XHDTYPE, 512)
    body = one + b"12 path=abc\n".ljust(512, b"\0")
    bomb = tmp_path / "site.tar.gz"
    gz_stream(bomb, body * 5000, 0)
    line = await unpack_refused(tmp_path, bomb)
    assert "extended headers in front of one entry" in line, line


async def test_a_gnu_sparse_member_is_refused(tmp_path: Path) -> None:
    """GNU sparse members (never in a WAR) carry maps that grow with every extension block."""
    info = tarfile.TarInfo("sparse.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 0
    archive = tmp_path / "site.tar.gz"
    archive.write_bytes(tar_with([info]))
    line = await unpack_refused(tmp_path, archive)
    assert "GNU sparse" in line, line


async def test_a_tar_gz_bomb_stops_at_the_ratio(tmp_path: Path) -> None:
    """A plain member of zeros honestly declared (256 MiB, about 1 MiB packed) breaks the
    unpacked/packed ratio: refused before writing, nothing installed."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = 256 << 20
    bomb = tmp_path / "site.tar.gz"
    await asyncio.to_thread(gz_stream, bomb, info.tobuf(format=tarfile.GNU_FORMAT), 256 << 20)
    line = await unpack_refused(tmp_path, bomb)
    assert "times its size (zip bomb?)" in line, line


def zip_of_many_entries(path: Path, count: int) -> None:
    """A zip whose central directory lists one tiny entry `count` times (about 47 bytes per
    entry): small on disk, a million objects for zipfile."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a", b"")
    data = buf.getvalue()
    start = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    entry = data[start:end]
    with path.open("wb") as f:
        f.write(data[:start])
        f.write(entry * count)
        eocd = struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(entry) * count, start, 0
        )
        f.write(eocd)


@pytest.mark.parametrize("extract", ["true", "false"])
def test_a_zip_listing_a_million_entries_is_refused_before_they_are_parsed(
    tmp_path: Path, extract: str
) -> None:
    """zipfile would read the whole central directory and build a million entry objects
    (450 MiB) before the entry limit could be checked, also when a .war is only checked for
    a readable directory: the entries are counted first, unparsed."""
    bomb = tmp_path / "site.war"
    zip_of_many_entries(bomb, 1_000_000)
    run, line = unpack_measured(tmp_path, bomb, extract=extract, WARLOADER_MAX_EXTRACT_FILES="1000")
    assert line.endswith("more than 1000 entries"), line
    assert run.max_rss_mib < 100, f"peak RSS {run.max_rss_mib:.0f} MiB"


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("f", b"1"), tar_link("l", "f"), tar_link("h", "l", hard=True)], "not to a file"),
        ([("f", b"1"), tar_link("l", "f"), ("l", b"through the link?")], "conflicts"),
        ([tar_link("l", "."), ("l/x", b"1")], "goes through a symbolic link"),
        ([("d/f", b"1"), tar_link("d/l", ".."), ("d/l/d/g", b"2")], "goes through"),
        ([tar_link("/abs", "x")], "absolute path"),
        ([("../up", b"1")], "outside the destination"),
    ],
    ids=["hardlink-to-link", "file-over-link", "via-own-link", "via-own-link-up", "abs", "dotdot"],
)
async def test_members_that_are_or_pass_through_links_are_refused(
    tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], why: str
) -> None:
    """Links created earlier by the same archive are never written through, hard links only
    reach earlier regular files, and absolute or climbing names are refused: exit 5."""
    archive = tmp_path / "site.tar.gz"
    archive.write_bytes(tar_with(members))
    line = await unpack_refused(tmp_path, archive)
    assert why in line, line
