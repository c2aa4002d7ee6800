"""The app swaps entries under the loader while it works: a directory of a tree being
unpacked or copied is replaced by a link to a directory outside the volume. Nothing is then
written outside; the swap is seen and the load refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sidecars.warloader import copier
from sidecars.warloader.errors import EXIT_ARCHIVE
from tests.warloader_support import leftovers, run_loader, war_bytes

pytestmark = pytest.mark.integration


def victim(outside: Path, name: str) -> Path:
    """A file outside with the name the loader's next step looks for through the link."""
    outside.mkdir()
    path = outside / name
    path.write_bytes(b"outside: unchanged")
    path.chmod(0o600)
    return path


def untouched(outside: Path, path: Path) -> None:
    assert list(outside.iterdir()) == [path]
    assert path.read_bytes() == b"outside: unchanged"
    assert path.stat().st_mode & 0o777 == 0o600


def swap_on_first_write(
    monkeypatch: pytest.MonkeyPatch, dest: Path, outside: Path, sub: str
) -> list[Path]:
    """When the loader first counts written bytes, the app replaces `sub` in the staging
    directory by a link to `outside` (the real directory moved aside). Returns what was
    swapped (empty if the moment never came)."""
    real: Callable[[copier.Progress, int], None] = copier.Progress.add
    swapped: list[Path] = []

    def add(self: copier.Progress, n: int) -> None:
        if not swapped:
            for stage in dest.glob(".*.warloader-stage-*"):
                victim = stage / sub
                if victim.is_dir() and not victim.is_symlink():
                    victim.rename(stage / "moved-aside")
                    victim.symlink_to(outside)
                    swapped.append(victim)
        real(self, n)

    monkeypatch.setattr(copier.Progress, "add", add)
    return swapped


async def test_a_directory_swapped_for_a_link_while_unpacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`WEB-INF` becomes a link to a directory outside while its first file is written: the
    file there of the same name is not chmod-ed, the next entries are not created through
    the link; exit 5."""
    outside = tmp_path / "outside"
    planted = victim(outside, "web.xml")
    src = tmp_path / "sample.war"
    src.write_bytes(war_bytes({"WEB-INF/a.txt": "a", "WEB-INF/lib/b.jar": "b"}))
    dest = tmp_path / "dest"
    dest.mkdir()
    swapped = swap_on_first_write(monkeypatch, dest, outside, "WEB-INF")
    run = await run_loader(
        {"WARLOADER_SOURCES": f"{src}#extract=true", "WARLOADER_DEST": str(dest)}
    )
    assert swapped, "the swap never happened"
    untouched(outside, planted)
    assert run.code == EXIT_ARCHIVE, run.errors()
    assert "goes through a symbolic link" in run.errors()[0]
    assert leftovers(dest) == []


async def test_a_directory_swapped_for_a_link_while_copying_a_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same during a directory source's copy: `conf` becomes a link while `conf/a.txt`
    is copied; neither is `a.txt` outside chmod-ed nor `conf/b.txt` written through it."""
    outside = tmp_path / "outside"
    planted = victim(outside, "a.txt")
    src = tmp_path / "bundle"
    (src / "conf").mkdir(parents=True)
    (src / "conf" / "a.txt").write_text("a")
    (src / "conf" / "b.txt").write_text("b")
    dest = tmp_path / "dest"
    dest.mkdir()
    swapped = swap_on_first_write(monkeypatch, dest, outside, "conf")
    run = await run_loader({"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)})
    assert swapped, "the swap never happened"
    untouched(outside, planted)
    assert run.code == EXIT_ARCHIVE, run.errors()
    assert "goes through a symbolic link" in run.errors()[0]
    assert leftovers(dest) == []
