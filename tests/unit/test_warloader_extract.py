"""Safe extraction: traversal, absolute paths, links out, bombs, limits, special files, modes."""

from __future__ import annotations

import bz2
import lzma
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sidecars.warloader.copier import Progress
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.extract import Limits, check_link, extract, member_parts
from sidecars.warloader.fsops import Modes
from tests.warloader_support import tar_link, tar_with, war_bytes, zip_bomb, zip_with

pytestmark = pytest.mark.unit

LIMITS = Limits(max_bytes=256 << 20, max_files=1000, max_ratio=200)
MODES = Modes()


def unpack(tmp_path: Path, data: bytes, limits: Limits = LIMITS, modes: Modes = MODES) -> Path:
    archive = tmp_path / "archive"
    archive.write_bytes(data)
    root = tmp_path / "stage"
    root.mkdir()
    afd = os.open(archive, os.O_RDONLY)
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        extract(afd, rfd, limits, modes, Progress("test"))
    finally:
        os.close(afd)
        os.close(rfd)
    return root


def refused(tmp_path: Path, data: bytes, limits: Limits = LIMITS) -> str:
    """Unpack in a fresh subdirectory; the archive must be refused and nothing written outside
    the staging directory."""
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    with pytest.raises(UnsafeArchive) as err:
        unpack(case, data, limits)
    assert sorted(p.name for p in case.iterdir()) == ["archive", "stage"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("case")) == []
    return str(err.value)


def test_a_war_unpacks_with_default_modes(tmp_path: Path) -> None:
    root = unpack(tmp_path, war_bytes({"index.jsp": "hi", "WEB-INF/lib/a.jar": "jar"}))
    assert (root / "WEB-INF" / "web.xml").read_text() == "<web-app/>"
    assert (root / "index.jsp").read_text() == "hi"
    assert stat.S_IMODE((root / "WEB-INF" / "lib").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "index.jsp").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "name",
    ["../evil.jsp", "WEB-INF/../../evil.jsp", "a/../../../etc/cron.d/x"],
)
def test_zip_slip_is_refused(tmp_path: Path, name: str) -> None:
    assert "outside the destination" in refused(tmp_path, zip_with([(name, b"x", 0)]))


@pytest.mark.parametrize("name", ["/etc/evil", "C:/evil"])
def test_absolute_paths_are_refused(tmp_path: Path, name: str) -> None:
    assert "absolute path" in refused(tmp_path, zip_with([(name, b"x", 0)]))
    assert "absolute path" in refused_tar(tmp_path, [(name, b"x")])


def refused_tar(tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> str:
    return refused(tmp_path, tar_with(members))


def test_zip_symlink_out_is_refused(tmp_path: Path) -> None:
    data = zip_with([("WEB-INF/lib", b"../../../../usr/lib", stat.S_IFLNK | 0o777)])
    assert "points outside" in refused(tmp_path, data)
    data = zip_with([("passwd", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    assert "points outside" in refused(tmp_path, data)


@pytest.mark.parametrize(
    "members, why",
    [
        ([tar_link("conf", "/etc")], "points outside"),
        ([tar_link("a/conf", "../../etc")], "points outside"),
        ([tar_link("d", "."), tar_link("e", "d/../..")], "points outside"),
        ([tar_link("sub", "."), ("sub/x", b"1"), tar_link("d", "sub"), ("d/x", b"2")], "through"),
        ([tar_link("passwd", "../../etc/passwd", hard=True)], "outside"),
        ([tar_link("passwd", "etc/passwd", hard=True)], "not to a file in the archive"),
    ],
)
def test_tar_links_out_are_refused(tmp_path: Path, members: list, why: str) -> None:  # type: ignore[type-arg]
    assert why in refused_tar(tmp_path, members)


def test_links_inside_are_kept(tmp_path: Path) -> None:
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [
        ("WEB-INF/web.xml", b"<web-app/>"),
        ("static/app.js", b"js"),
        tar_link("static/current.js", "app.js"),
        tar_link("WEB-INF/static", "../static"),
        tar_link("copy.js", "static/app.js", hard=True),
    ]
    root = unpack(tmp_path, tar_with(members))
    assert (root / "static" / "current.js").read_text() == "js"
    assert (root / "WEB-INF" / "static" / "app.js").read_text() == "js"
    assert (root / "copy.js").stat().st_ino == (root / "static" / "app.js").stat().st_ino


def test_zip_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    why = refused(tmp_path, zip_bomb(16 << 20))
    assert "times its size" in why


def test_tar_gz_bomb_is_stopped_while_writing(tmp_path: Path) -> None:
    data = tar_with([("zeros", bytes(32 << 20))])
    assert "times its size" in refused(tmp_path, data)


def test_size_and_count_limits(tmp_path: Path) -> None:
    many = zip_with([(f"f{i}", b"x", 0) for i in range(20)])
    assert "more than 10 entries" in refused(tmp_path, many, Limits(1 << 20, 10, 200))
    big = tar_with([("a", b"a" * 3000), ("b", b"b" * 3000)])
    assert "more than 4096 bytes" in refused(tmp_path, big, Limits(4096, 10, 10**6))


def test_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    assert "device, fifo or socket" in refused_tar(tmp_path, [fifo])
    dev = zip_with([("null", b"", stat.S_IFCHR | 0o666)])
    assert "device, fifo or socket" in refused(tmp_path, dev)


def test_setuid_bits_are_dropped_and_exec_kept(tmp_path: Path) -> None:
    suid = tarfile.TarInfo("bin/tool")
    suid.mode = 0o4755
    suid.size = 0
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [suid]
    root = unpack(tmp_path, tar_with(members))
    assert stat.S_IMODE((root / "bin" / "tool").stat().st_mode) == 0o755


def test_duplicates_and_corrupt_archives_are_refused(tmp_path: Path) -> None:
    dup = tar_with([("a", b"1"), ("a", b"2")])
    assert "duplicate" in refused(tmp_path, dup)
    corrupt = bytearray(war_bytes({"index.jsp": "x" * 5000}))
    corrupt[40:60] = b"\0" * 20
    assert "corrupt" in refused(tmp_path, bytes(corrupt))
    assert "not a zip" in refused(tmp_path, b"just text")


@pytest.mark.parametrize(
    "parts, target, ok",
    [
        (("a", "l"), "b", True),
        (("a", "l"), "../b", True),
        (("a", "l"), "../../b", False),
        (("l",), "x/../y", False),
        (("a", "b", "l"), "../../c/d", True),
        (("l",), "/abs", False),
        (("l",), "", False),
    ],
)
def test_check_link_table(parts: tuple[str, ...], target: str, ok: bool) -> None:
    if ok:
        check_link(parts, target)
    else:
        with pytest.raises(UnsafeArchive):
            check_link(parts, target)


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress], ids=["bz2", "xz"])
def test_tar_bz2_and_xz_unpack_and_are_checked(tmp_path: Path, compress: Any) -> None:
    plain = tar_with([("WEB-INF/web.xml", b"<web-app/>"), ("index.jsp", b"hi")], gz=False)
    good = tmp_path / "case-ok"
    good.mkdir()
    assert (unpack(good, compress(plain)) / "index.jsp").read_bytes() == b"hi"
    assert "outside" in refused(tmp_path, compress(tar_with([("../evil", b"x")], gz=False)))
    bomb = compress(tar_with([("zeros", bytes(8 << 20))], gz=False))
    assert "times its size" in refused(tmp_path, bomb, Limits(1 << 30, 10, 20))
    broken = bytearray(compress(plain))
    broken[len(broken) // 2 :] = b"\0" * (len(broken) - len(broken) // 2)
    assert "corrupt" in refused(tmp_path, bytes(broken))


def test_member_parts() -> None:
    assert member_parts("./a//b/./c") == ("a", "b", "c")
    assert member_parts("./") == ()
    for bad in ["/a", "a/../../b", "x\0y", "D:evil"]:
        with pytest.raises(UnsafeArchive):
            member_parts(bad)


@pytest.mark.parametrize(
    "name",
    [
        "zip-empty-name",
        "zip-name-not-utf8",
        "zip-offset-oserror",
        "zip-unsupported-compression",
        "tar-overflow",
    ],
)
def test_what_the_archive_readers_raise_for_malformed_input_is_a_corrupt_archive(
    tmp_path: Path, name: str
) -> None:
    """zipfile and tarfile raise UnicodeDecodeError, NotImplementedError, IndexError, OSError
    EINVAL or OverflowError for these archives (found by fuzzing): each is one 'is corrupt'
    line (exit 5), not an unexpected failure or a destination error."""
    corpus = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "archive"
    assert "is corrupt" in refused(tmp_path, (corpus / f"regress-{name}").read_bytes())
