"""warloader against real files: install, verify, idempotence, directories, modes, errors."""

from __future__ import annotations

import asyncio
import bz2
import lzma
import os
import stat
from pathlib import Path

import pytest

from sidecars.warloader.errors import EXIT_ARCHIVE, EXIT_CONFIG, EXIT_DIGEST, EXIT_SOURCE
from tests.warloader_support import (
    leftovers,
    run_loader,
    sha256,
    tar_link,
    tar_with,
    war_bytes,
    zip_bomb,
    zip_with,
)

pytestmark = pytest.mark.integration


def make_source(tmp_path: Path, data: bytes, name: str = "sample.war") -> Path:
    src = tmp_path / "image" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src


async def test_installs_a_war_and_a_second_run_is_a_no_op(tmp_path: Path) -> None:
    war = war_bytes()
    src = make_source(tmp_path, war)
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    first = await run_loader(env)
    assert first.code == 0, first.errors()
    assert first.ready
    installed = dest / "sample.war"
    assert installed.read_bytes() == war
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    assert first.outcomes() == ["installed"]
    before = os.stat(installed)

    second = await run_loader(env)
    assert second.code == 0
    after = os.stat(installed)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.outcomes() == ["unchanged"]
    assert second.metric("warloader_artifacts_total", outcome="unchanged") == 1
    assert second.metric("warloader_artifacts_total", outcome="installed") == 0
    assert second.metric("warloader_bytes_total") == 0
    assert leftovers(dest) == []


async def test_pinned_digest_is_checked_and_then_skips_reading(tmp_path: Path) -> None:
    war = war_bytes()
    src = make_source(tmp_path, war)
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": f"{src}#sha256={sha256(war)}", "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    assert (dest / "sample.war").read_bytes() == war
    src.chmod(0)  # a second run must not even need to read the source again
    again = await run_loader(env)
    assert again.code == 0
    assert again.outcomes() == ["unchanged"]
    assert "pinned digest already installed" in again.logs.messages()[0]


async def test_digest_mismatch_installs_nothing_and_keeps_the_old_version(tmp_path: Path) -> None:
    dest = tmp_path / "webapps"
    dest.mkdir()
    (dest / "sample.war").write_bytes(b"old version")
    src = make_source(tmp_path, war_bytes())
    env = {"WARLOADER_SOURCES": f"{src}#sha256={'0' * 64}", "WARLOADER_DEST": str(dest)}
    run = await run_loader(env)
    assert run.code == EXIT_DIGEST
    assert (dest / "sample.war").read_bytes() == b"old version"
    assert leftovers(dest) == []
    [line] = run.errors()
    assert line.startswith("sample.war: digest mismatch:") and "nothing installed" in line
    assert run.metric("warloader_artifacts_total", outcome="digest_mismatch") == 1
    assert not run.ready


async def test_missing_source_exits_3_with_one_line(tmp_path: Path) -> None:
    env = {"WARLOADER_SOURCES": str(tmp_path / "nope.war"), "WARLOADER_DEST": str(tmp_path / "d")}
    run = await run_loader(env)
    assert run.code == EXIT_SOURCE
    assert run.errors() == [
        f"nope.war: source unavailable: cannot read {tmp_path}/nope.war: No such file or directory"
    ]


async def test_changed_source_is_reinstalled_atomically(tmp_path: Path) -> None:
    src = make_source(tmp_path, war_bytes({"v.txt": "1"}))
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    reader = open(dest / "sample.war", "rb")  # noqa: ASYNC230 - an app holding the old one open
    v2 = war_bytes({"v.txt": "2"})
    src.write_bytes(v2)
    run = await run_loader(env)
    assert run.outcomes() == ["installed"]
    assert (dest / "sample.war").read_bytes() == v2
    assert reader.read() == war_bytes({"v.txt": "1"})  # the old inode, whole, for its reader
    reader.close()


async def test_lost_record_or_touched_unpinned_source_reinstalls_whole(tmp_path: Path) -> None:
    war = war_bytes()
    src = make_source(tmp_path, war)
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": f"{src}#sha256={sha256(war)}", "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    ino = (dest / "sample.war").stat().st_ino
    (dest / ".sample.war.warloader.json").unlink()  # lost record: we must compare contents
    run = await run_loader(env)
    assert run.outcomes() == ["installed"]  # no record: cannot trust what is there
    assert (dest / "sample.war").stat().st_ino != ino
    os.utime(src)  # touched, same bytes
    env2 = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    first = await run_loader(env2)  # settings are the same, the source stat changed
    assert first.outcomes() == ["installed"]


async def test_directory_source_is_staged_and_swapped(tmp_path: Path) -> None:
    tree = tmp_path / "image" / "conf"
    (tree / "sub").mkdir(parents=True)
    (tree / "app.properties").write_text("v=1\n")
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("sub/run.sh")
    dest = tmp_path / "shared"
    env = {"WARLOADER_SOURCES": str(tree), "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    out = dest / "conf"
    assert (out / "app.properties").read_text() == "v=1\n"
    assert stat.S_IMODE((out / "sub" / "run.sh").stat().st_mode) == 0o755
    assert os.readlink(out / "link") == "sub/run.sh"
    ino = out.stat().st_ino
    again = await run_loader(env)
    assert again.outcomes() == ["unchanged"] and out.stat().st_ino == ino
    (tree / "app.properties").write_text("v=2\n")
    third = await run_loader(env)
    assert third.outcomes() == ["installed"]
    assert (out / "app.properties").read_text() == "v=2\n"
    assert out.stat().st_ino != ino
    assert leftovers(dest) == []


async def test_directory_with_a_link_out_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "image" / "conf"
    tree.mkdir(parents=True)
    (tree / "passwd").symlink_to("/etc/passwd")
    run = await run_loader({"WARLOADER_SOURCES": str(tree), "WARLOADER_DEST": str(tmp_path / "d")})
    assert run.code == 5
    assert "points outside the destination" in run.errors()[0]


async def test_extracts_a_war_and_swaps_the_directory(tmp_path: Path) -> None:
    src = make_source(tmp_path, war_bytes({"index.jsp": "v1"}))
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest), "WARLOADER_EXTRACT": "1"}
    assert (await run_loader(env)).code == 0
    app = dest / "sample"
    assert (app / "WEB-INF" / "web.xml").read_text() == "<web-app/>"
    assert (app / "index.jsp").read_text() == "v1"
    assert not (dest / "sample.war").exists()
    src.write_bytes(war_bytes({"index.jsp": "v2"}))
    assert (await run_loader(env)).outcomes() == ["installed"]
    assert (app / "index.jsp").read_text() == "v2"
    assert leftovers(dest) == []


def tamper_keeping_mtime(path: Path, data: bytes) -> None:
    """Rewrite `path` in place with same-size bytes and put its mtime back, as a careless
    hand edit or a half-finished copy over it might."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("change", ["modified", "deleted", "added", "chmod"])
async def test_a_changed_installed_directory_is_installed_again(
    tmp_path: Path, change: str
) -> None:
    war = war_bytes({"index.jsp": "v1", "WEB-INF/classes/app.properties": "a=1"})
    src = make_source(tmp_path, war)
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": f"{src}#sha256={sha256(war)}", "WARLOADER_DEST": str(dest)}
    env["WARLOADER_EXTRACT"] = "true"
    assert (await run_loader(env)).outcomes() == ["installed"]
    assert (await run_loader(env)).outcomes() == ["unchanged"]
    app = dest / "sample"
    props = app / "WEB-INF" / "classes" / "app.properties"
    if change == "modified":
        tamper_keeping_mtime(props, b"a=2")
    elif change == "deleted":
        props.unlink()  # deep inside: the top directory's mtime does not move
    elif change == "added":
        (app / "WEB-INF" / "classes" / "extra.class").write_bytes(b"x")
    else:
        props.chmod(0o600)
    run = await run_loader(env)
    assert run.outcomes() == ["installed"], run.logs.messages()
    assert any("was changed since it was installed" in m for m in run.logs.messages())
    assert props.read_text() == "a=1"
    assert stat.S_IMODE(props.stat().st_mode) == 0o644
    assert not (app / "WEB-INF" / "classes" / "extra.class").exists()
    assert (await run_loader(env)).outcomes() == ["unchanged"]


async def test_a_file_rewritten_in_place_is_installed_again(tmp_path: Path) -> None:
    war = war_bytes()
    src = make_source(tmp_path, war)
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).outcomes() == ["installed"]
    tamper_keeping_mtime(dest / "sample.war", bytes(len(war)))
    run = await run_loader(env)
    assert run.outcomes() == ["installed"]
    assert (dest / "sample.war").read_bytes() == war


async def test_modes_and_owner_are_applied(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    src = make_source(tmp_path, war_bytes())
    dest = tmp_path / "webapps"
    env = {
        "WARLOADER_SOURCES": f"{src},{src}#extract=true",
        "WARLOADER_DEST": str(dest),
        "WARLOADER_OWNER": "1234:2345",
        "WARLOADER_FILE_MODE": "0640",
        "WARLOADER_DIR_MODE": "0750",
    }
    run = await run_loader(env)
    assert run.code == 0, run.errors()
    for path, mode in [
        (dest / "sample.war", 0o640),
        (dest / "sample", 0o750),
        (dest / "sample" / "WEB-INF", 0o750),
        (dest / "sample" / "WEB-INF" / "web.xml", 0o640),
    ]:
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 1234, 2345), path
    env["WARLOADER_FILE_MODE"] = "0644"  # other settings: the record no longer matches
    assert (await run_loader(env)).outcomes() == ["installed", "installed"]


async def test_bad_sources_are_configuration_errors(tmp_path: Path) -> None:
    from sidecars.runtime import ConfigError
    from tests.warloader_support import build

    with pytest.raises(ConfigError) as err:
        build(
            {
                "WARLOADER_SOURCES": "relative.war,/a/x.war#sha256=abc,/a/x.war,/b/x.war,"
                "https://u:hunter2@example.org/",
                "WARLOADER_DEST": "/d",
            }
        )
    text = "\n".join(err.value.problems)
    assert "item 1 (relative.war): expected an absolute path" in text
    assert "item 2 (/a/x.war): sha256 must be 64 hex digits" in text
    assert "item 4 (/b/x.war): installs as 'x.war' like item 3" in text
    assert "item 5 (https://example.org/): destination name '' is empty" in text
    assert "hunter2" not in text
    assert EXIT_CONFIG == 2


@pytest.mark.parametrize(
    "archive, why",
    [
        (zip_with([("WEB-INF/web.xml", b"<web-app/>", 0), ("../../evil.jsp", b"x", 0)]), "'..'"),
        (tar_with([("ok.txt", b"x"), tar_link("etc", "/etc")]), "points outside"),
        (zip_bomb(16 << 20), "zip bomb"),
    ],
)
async def test_unsafe_archives_exit_5_and_install_nothing(
    tmp_path: Path, archive: bytes, why: str
) -> None:
    src = make_source(tmp_path, archive, "evil.war")
    dest = tmp_path / "webapps"
    dest.mkdir()
    (dest / "evil").mkdir()
    (dest / "evil" / "old.txt").write_text("old")
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest), "WARLOADER_EXTRACT": "1"}
    run = await run_loader(env)
    assert run.code == EXIT_ARCHIVE
    [line] = run.errors()
    assert line.startswith("evil: unsafe archive:") and why in line
    assert sorted(p.name for p in (dest / "evil").iterdir()) == ["old.txt"]
    assert leftovers(dest) == [] and not (tmp_path / "evil.jsp").exists()


async def test_fsgroup_volume_group_is_inherited(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("setting a volume's group needs root")
    src = make_source(tmp_path, war_bytes())
    dest = tmp_path / "webapps"
    dest.mkdir()
    os.chown(dest, -1, 4321)  # what the kubelet does for fsGroup: group + setgid bit
    dest.chmod(0o2775)
    env = {"WARLOADER_SOURCES": f"{src},{src}#extract=true", "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    for path in [dest / "sample.war", dest / "sample", dest / "sample" / "WEB-INF" / "web.xml"]:
        assert path.stat().st_gid == 4321, path
    sub = (dest / "sample" / "WEB-INF").stat()
    assert stat.S_IMODE(sub.st_mode) == 0o2755  # setgid kept on directories, never on files
    assert stat.S_IMODE((dest / "sample.war").stat().st_mode) == 0o644


async def test_global_extract_unpacks_archives_and_copies_the_rest(tmp_path: Path) -> None:
    war = make_source(tmp_path, war_bytes())
    props = make_source(tmp_path, b"a=1\n", "app.properties")
    plain_tar = tar_with([("static/site.css", b"body{}")], gz=False)
    xz = make_source(tmp_path, lzma.compress(plain_tar), "assets.tar.xz")
    bz = make_source(tmp_path, bz2.compress(plain_tar), "docs.tbz2")
    conf = tmp_path / "image" / "conf"
    conf.mkdir()
    (conf / "x.xml").write_text("<x/>")
    dest = tmp_path / "webapps"
    env = {
        "WARLOADER_SOURCES": f"{war},{props},{conf},{xz},{bz}",
        "WARLOADER_DEST": str(dest),
        "WARLOADER_EXTRACT": "true",
    }
    run = await run_loader(env)
    assert run.code == 0, run.errors()
    assert (dest / "sample" / "WEB-INF" / "web.xml").is_file()
    assert (dest / "app.properties").read_bytes() == b"a=1\n"
    assert (dest / "conf" / "x.xml").read_text() == "<x/>"
    for name in ("assets", "docs"):
        assert (dest / name / "static" / "site.css").read_bytes() == b"body{}"


async def test_a_second_loader_waits_for_the_first(tmp_path: Path) -> None:
    import fcntl

    src = make_source(tmp_path, war_bytes())
    dest = tmp_path / "webapps"
    dest.mkdir()
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    # another loader (here: this test) holds the lock for sample.war
    with open(dest / ".sample.war.warloader.lock", "w") as held:  # noqa: ASYNC230
        fcntl.flock(held, fcntl.LOCK_EX)
        task = asyncio.create_task(run_loader(env))
        await asyncio.wait([task], timeout=1.0)
        assert not task.done() and not (dest / "sample.war").exists()
    run = await asyncio.wait_for(task, 30)
    assert run.code == 0
    assert "waiting for another loader working on sample.war" in run.logs.messages()
    assert (dest / "sample.war").read_bytes() == src.read_bytes()
