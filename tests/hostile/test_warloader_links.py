"""A hostile app shares the warloader's volume: it plants links, hard links, FIFOs and
directories at the names the loader creates, and links at path sources. No link the loader
did not create is ever written (or read) through, nothing blocks, and the install still works."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from sidecars.warloader import beneath
from sidecars.warloader.errors import EXIT_DEST, EXIT_SOURCE
from tests.warloader_support import (
    artifact_server,
    leftovers,
    run_loader,
    sha256,
    tmpfs,
    war_bytes,
)

pytestmark = pytest.mark.integration

WAR = war_bytes({"tag.txt": "served"})


@pytest.fixture(autouse=True, params=["openat2", "per-component"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case twice: with openat2(2), and with the fallback for kernels without it (one
    O_NOFOLLOW open per component; the descriptor's real path checked for sources)."""
    if request.param == "per-component":
        monkeypatch.setattr(beneath, "_openat2_works", False)


SECRET = b"outside the volume: must never change\n"


def victim(tmp_path: Path) -> Path:
    """A file outside the destination that a planted link points at."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    path = outside / "victim"
    path.write_bytes(SECRET)
    return path


def env_for(url: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), **extra}


def record_for(url: str) -> bytes:
    """The partial-download record a hostile app can forge: it knows the URL."""
    key = hashlib.sha256(url.encode()).hexdigest()
    return json.dumps({"url": key, "etag": '"v1"', "last_modified": None}).encode()


async def install_url(tmp_path: Path, plant: dict[str, object]) -> Path:
    """Plant entries in the destination (name -> a Path to link to, 'fifo', 'dir' or
    'hardlink:<path>'), then install WAR from a URL; return the destination."""
    dest = tmp_path / "dest"
    dest.mkdir()
    async with artifact_server() as srv:
        url = srv.put("/sample.war", WAR, etag='"v1"')
        for name, what in plant.items():
            at = dest / name
            if isinstance(what, Path):
                at.symlink_to(what)
            elif what == "fifo":
                os.mkfifo(at)
            elif what == "dir":
                (at / "inside").mkdir(parents=True)
            elif what == "record":
                at.write_bytes(record_for(url))
            else:
                assert isinstance(what, str) and what.startswith("hardlink:")
                os.link(what.removeprefix("hardlink:"), at)
        async with asyncio.timeout(30):  # a FIFO opened for reading must not block us
            run = await run_loader(env_for(url + f"#sha256={sha256(WAR)}", dest))
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == WAR
    assert leftovers(dest) == []
    return dest


async def test_a_link_at_the_partial_download_name_is_not_written_through(
    tmp_path: Path,
) -> None:
    """A symlink planted at `.sample.war.warloader-partial` would have the download truncate
    and overwrite its target: the link itself is replaced, the target stays."""
    target = victim(tmp_path)
    await install_url(tmp_path, {".sample.war.warloader-partial": target})
    assert target.read_bytes() == SECRET


async def test_a_link_at_a_resumable_partial_download_is_not_appended_to(tmp_path: Path) -> None:
    """With a forged resume record next to it, a linked partial download would be re-hashed
    and appended to (or truncated on a 200): it is discarded instead."""
    target = victim(tmp_path)
    plant = {
        ".sample.war.warloader-partial": target,
        ".sample.war.warloader-partial.json": "record",
    }
    await install_url(tmp_path, plant)
    assert target.read_bytes() == SECRET


async def test_a_hard_link_at_a_resumable_partial_download_is_not_written(tmp_path: Path) -> None:
    """A hard link to a file outside (same filesystem) at the partial name, with a forged
    record: writing through it would change the outside file."""
    target = victim(tmp_path)
    plant = {
        ".sample.war.warloader-partial": f"hardlink:{target}",
        ".sample.war.warloader-partial.json": "record",
    }
    await install_url(tmp_path, plant)
    assert target.read_bytes() == SECRET


async def test_a_link_at_the_partial_record_temp_name_is_not_written_through(
    tmp_path: Path,
) -> None:
    """The partial download's record is written via a temporary name: a link planted there
    must not be followed."""
    target = victim(tmp_path)
    await install_url(tmp_path, {".sample.war.warloader-partial.json.tmp": target})
    assert target.read_bytes() == SECRET


async def test_a_link_at_the_record_is_replaced_not_followed(tmp_path: Path) -> None:
    """`.sample.war.warloader.json` as a link to a file outside: the record replaces the link
    and the outside file stays."""
    target = victim(tmp_path)
    dest = await install_url(tmp_path, {".sample.war.warloader.json": target})
    assert target.read_bytes() == SECRET
    assert not (dest / ".sample.war.warloader.json").is_symlink()


async def test_a_link_at_the_lock_name_creates_nothing_outside(tmp_path: Path) -> None:
    """A dangling link at `.sample.war.warloader.lock`: opening it to lock would create its
    target outside the volume."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "created-by-the-loader"
    await install_url(tmp_path, {".sample.war.warloader.lock": target})
    assert not target.exists()


async def test_a_fifo_at_the_partial_name_does_not_block(tmp_path: Path) -> None:
    """A FIFO at the partial download's name, with a forged record: reading it to resume
    would block forever. It is removed and the download starts afresh."""
    await install_url(
        tmp_path,
        {".sample.war.warloader-partial": "fifo", ".sample.war.warloader-partial.json": "record"},
    )


async def test_a_fifo_at_the_lock_name_does_not_block(tmp_path: Path) -> None:
    """A FIFO at the lock's name is replaced by a regular lock file."""
    await install_url(tmp_path, {".sample.war.warloader.lock": "fifo"})


async def test_directories_at_the_loaders_names_are_cleared(tmp_path: Path) -> None:
    """Directories planted at the partial download, its record and the lock: the loader
    owns these names, removes what sits there and installs."""
    await install_url(
        tmp_path,
        {
            ".sample.war.warloader-partial": "dir",
            ".sample.war.warloader-partial.json": "dir",
            ".sample.war.warloader.lock": "dir",
            ".sample.war.warloader.json": "dir",
        },
    )


async def test_a_path_source_linking_out_of_its_directory_is_refused(tmp_path: Path) -> None:
    """A path source that is (or became) a symlink leaving its own directory, e.g. planted by
    an app sharing the source volume, is refused with exit 3: the loader never copies a file
    from elsewhere (a secret of its own image) into the app's volume."""
    secret = victim(tmp_path)
    sources = tmp_path / "artifacts"
    sources.mkdir()
    (sources / "sample.war").symlink_to(secret)
    dest = tmp_path / "dest"
    run = await run_loader(
        {"WARLOADER_SOURCES": str(sources / "sample.war"), "WARLOADER_DEST": str(dest)}
    )
    assert run.code == EXIT_SOURCE
    [line] = run.errors()
    assert "leaves" in line and "sample.war" in line, line
    assert not (dest / "sample.war").exists()


async def test_a_path_source_linking_inside_its_directory_is_followed(tmp_path: Path) -> None:
    """Links that stay inside the source's directory (a ConfigMap's `..data` links) work."""
    sources = tmp_path / "artifacts"
    (sources / "..2026_01_01").mkdir(parents=True)
    (sources / "..2026_01_01" / "sample.war").write_bytes(WAR)
    (sources / "..data").symlink_to("..2026_01_01")
    (sources / "sample.war").symlink_to("..data/sample.war")
    dest = tmp_path / "dest"
    run = await run_loader(
        {"WARLOADER_SOURCES": str(sources / "sample.war"), "WARLOADER_DEST": str(dest)}
    )
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == WAR


async def test_a_fifo_as_a_path_source_does_not_block(tmp_path: Path) -> None:
    """A FIFO where a source file is expected: opening it for reading would block until a
    writer comes. It is refused at once (exit 3)."""
    sources = tmp_path / "artifacts"
    sources.mkdir()
    os.mkfifo(sources / "sample.war")
    async with asyncio.timeout(20):
        run = await run_loader(
            {
                "WARLOADER_SOURCES": str(sources / "sample.war"),
                "WARLOADER_DEST": str(tmp_path / "d"),
            }
        )
    assert run.code == EXIT_SOURCE
    [line] = run.errors()
    assert "not a regular file" in line, line


async def test_a_directory_where_the_artifact_goes_is_replaced(tmp_path: Path) -> None:
    """The app made `sample.war` a directory (with files in it): the WAR file takes its place
    in one step, the directory is removed."""
    dest = await install_url(tmp_path, {"sample.war": "dir"})
    assert (dest / "sample.war").is_file()


async def test_a_link_where_an_unpacked_tree_goes_is_replaced_not_followed(
    tmp_path: Path,
) -> None:
    """`sample` is a link to a directory outside: the unpacked tree replaces the link; nothing
    is written into, or deleted from, the directory it pointed at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(SECRET)
    src = tmp_path / "sample.war"
    src.write_bytes(WAR)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sample").symlink_to(outside)
    run = await run_loader(env_for(f"{src}#extract=true", dest))
    assert run.code == 0, run.errors()
    assert not (dest / "sample").is_symlink()
    assert (dest / "sample" / "tag.txt").read_text() == "served"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_bytes() == SECRET


async def test_a_fifo_at_the_record_name_does_not_block(tmp_path: Path) -> None:
    """A FIFO at `.sample.war.warloader.json`: reading the record must not wait for a writer;
    it counts as no record and is replaced."""
    dest = await install_url(tmp_path, {".sample.war.warloader.json": "fifo"})
    assert (dest / ".sample.war.warloader.json").is_file()


async def test_a_planted_staging_directory_with_a_link_is_removed_not_followed(
    tmp_path: Path,
) -> None:
    """A leftover-looking `.sample.war.warloader-stage-x` holding a link to a directory
    outside: cleaning leftovers deletes the link, not what it points at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(SECRET)
    dest = tmp_path / "dest"
    (dest / ".sample.war.warloader-stage-x").mkdir(parents=True)
    (dest / ".sample.war.warloader-stage-x" / "out").symlink_to(outside)
    (dest / ".sample.war.warloader-tmp-y").symlink_to(outside)
    src = tmp_path / "sample.war"
    src.write_bytes(WAR)
    run = await run_loader(env_for(str(src), dest))
    assert run.code == 0, run.errors()
    assert leftovers(dest) == []
    assert (outside / "keep.txt").read_bytes() == SECRET


async def test_a_directory_source_with_a_link_to_a_secret_is_not_copied_through(
    tmp_path: Path,
) -> None:
    """A directory source holding a link to a file outside: refused (exit 5), the secret's
    bytes never land in the volume."""
    secret = victim(tmp_path)
    src = tmp_path / "bundle"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    (src / "leak.txt").symlink_to(secret)
    dest = tmp_path / "dest"
    run = await run_loader(env_for(str(src), dest))
    assert run.code == 5
    assert not (dest / "bundle").exists()


async def test_a_full_volume_while_unpacking_exits_6_and_keeps_the_old_tree(
    tmp_path: Path,
) -> None:
    """The app filled the volume: unpacking a bigger version fails with exit 6 and one line,
    the old tree stays, no staging directory is left."""
    src = tmp_path / "sample.war"
    with tmpfs("1m") as dest:
        src.write_bytes(war_bytes({"tag.txt": "v1"}))
        env = env_for(f"{src}#extract=true", dest, WARLOADER_MAX_EXTRACT_RATIO="100000")
        assert (await run_loader(env)).code == 0
        # a few KiB packed, so the archive fits and the unpacked 3 MiB do not
        src.write_bytes(war_bytes({"tag.txt": "v2", "zeros.bin": bytes(3 << 20)}))
        run = await run_loader(env)
        assert run.code == EXIT_DEST, run.errors()
        [line] = run.errors()
        assert line.endswith("No space left on device"), line
        assert (dest / "sample" / "tag.txt").read_text() == "v1"
        assert leftovers(dest) == []


async def test_an_absolute_link_that_stays_inside_the_sources_directory_is_followed(
    tmp_path: Path,
) -> None:
    """`/artifacts/sample.war -> /artifacts/releases/1.4.war` (an absolute link, as image
    layouts have them) stays inside the source's directory: it is followed."""
    sources = tmp_path / "artifacts"
    (sources / "releases").mkdir(parents=True)
    (sources / "releases" / "1.4.war").write_bytes(WAR)
    (sources / "sample.war").symlink_to(sources / "releases" / "1.4.war")
    dest = tmp_path / "dest"
    run = await run_loader(env_for(str(sources / "sample.war"), dest))
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == WAR
