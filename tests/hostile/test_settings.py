"""Rule 9: a setting that can never work is a configuration error at start: one line naming the
setting and what is wrong, exit 2, no traceback. What may legitimately work later (a member's
or a server's DNS name in Kubernetes) is not refused."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    SidecarProcess,
    background,
    bad_setting_exits_2,
    free_port,
    http_get,
    run_sidecar,
    wait_until,
)

pytestmark = pytest.mark.integration

SIDECARS = ["logshipper", "ambassador", "adapter", "warloader"]
NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine
NO_NAME = "no-such-host.invalid"  # RFC 6761: never resolves


@pytest.mark.parametrize("name", SIDECARS)
def test_admin_address_not_on_this_machine_exits_2(name: str) -> None:
    """The admin address is an IP this machine does not have: bind would fail with
    EADDRNOTAVAIL forever, so it is a bad setting (exit 2), not a runtime failure (exit 1)."""
    var = f"{name.upper()}_ADMIN_ADDR"
    env = {var: f"{NOT_HERE}:{free_port()}"}
    bad_setting_exits_2(name, env, var, "expected an address of this machine")


@pytest.mark.parametrize("name", SIDECARS)
def test_admin_host_that_does_not_resolve_exits_2(name: str) -> None:
    """A listen host name that does not resolve can never be bound."""
    var = f"{name.upper()}_ADMIN_ADDR"
    bad_setting_exits_2(name, {var: f"{NO_NAME}:9999"}, var, "expected a host name or address")


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"], ids=["empty-label", "long-label"])
def test_admin_host_no_resolver_can_read_exits_2(host: str) -> None:
    """A listen host with an empty or over-long label (which Python's idna codec refuses with a
    UnicodeError) is one line and exit 2 like any name that does not resolve, no traceback."""
    bad_setting_exits_2(
        "warloader",
        {"WARLOADER_ADMIN_ADDR": f"{host}:9999"},
        "WARLOADER_ADMIN_ADDR",
        "expected a host name or address",
    )


@pytest.mark.parametrize(
    ("name", "var", "extra"),
    [
        ("adapter", "ADAPTER_LISTEN", {}),
        ("ambassador", "AMBASSADOR_LISTEN", {"AMBASSADOR_UPSTREAMS": "127.0.0.1:9"}),
    ],
)
def test_service_listen_address_not_on_this_machine_exits_2(
    name: str, var: str, extra: dict[str, str]
) -> None:
    """The service's own listen address, like the admin one."""
    env = {var: f"{NOT_HERE}:{free_port()}", **extra}
    bad_setting_exits_2(name, env, var, "expected an address of this machine")


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
@pytest.mark.parametrize("name", ["adapter", "warloader"])
def test_privileged_port_without_the_capability_exits_2(name: str) -> None:
    """As an unprivileged user (like the images' UID 65532) a port below 1024 can never be
    bound without CAP_NET_BIND_SERVICE: one line naming the setting, exit 2, not exit 1."""
    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip()
    if int(start) <= 80:
        pytest.skip(f"ports from {start} on are unprivileged here")
    var = f"{name.upper()}_ADMIN_ADDR"
    done = run_sidecar(name, env={var: "127.0.0.1:80"}, prefix=NOBODY)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}: bad setting {var}='127.0.0.1:80': expected a port")


def test_config_file_listener_not_on_this_machine_exits_2(tmp_path: Path) -> None:
    """A listener of the ambassador's config file on a foreign address: exit 2 at start, the
    line naming the file and the listener."""
    conf = tmp_path / "amb.yaml"
    conf.write_text(f"listeners:\n  redis:\n    listen: {NOT_HERE}:6379\n    upstreams: [a:1]\n")
    done = run_sidecar("ambassador", env={"AMBASSADOR_CONFIG": str(conf)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "listeners.redis.listen=" in lines[0], done.stderr
    assert "expected an address of this machine" in lines[0]


# Every file setting, missing at start: (sidecar, variable, other settings it needs).
FILE_SETTINGS = [
    ("logshipper", "LOGSHIPPER_ES_CA_FILE", {}),
    ("logshipper", "LOGSHIPPER_ES_CLIENT_CERT", {"LOGSHIPPER_ES_CLIENT_KEY": "/etc/hostname"}),
    ("logshipper", "LOGSHIPPER_ES_CLIENT_KEY", {"LOGSHIPPER_ES_CLIENT_CERT": "/etc/hostname"}),
    ("adapter", "ADAPTER_AUTH_FILE", {}),
    ("adapter", "ADAPTER_CA_FILE", {"ADAPTER_TARGET": "https://127.0.0.1:1/metrics"}),
    ("ambassador", "AMBASSADOR_CONFIG", {}),
    ("warloader", "WARLOADER_CA_FILE", {}),
    ("warloader", "WARLOADER_BEARER_TOKEN_FILE", {}),
    ("warloader", "WARLOADER_BASIC_AUTH_FILE", {}),
]


@pytest.mark.parametrize(("name", "var", "extra"), FILE_SETTINGS)
@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_file_setting_that_is_not_a_readable_file_exits_2(
    tmp_path: Path, name: str, var: str, extra: dict[str, str], kind: str
) -> None:
    """A file setting naming nothing, a directory, or a FIFO (which would block a reader
    forever): one line naming the setting, exit 2, promptly."""
    path = tmp_path / "file"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    env = {var: str(path), f"{name.upper()}_STATE_DIR": str(tmp_path / "state"), **extra}
    bad_setting_exits_2(name, env, var, "expected a readable file")


@pytest.mark.parametrize("kind", ["missing", "fifo"])
def test_member_file_not_readable_at_start_exits_2(tmp_path: Path, kind: str) -> None:
    """A file:// member list that is not there at start (or is a FIFO, which would block the
    read) is a bad setting, unlike a DNS name: one line, exit 2, promptly."""
    member = tmp_path / "members.txt"
    if kind == "fifo":
        os.mkfifo(member)
    var = "AMBASSADOR_UPSTREAMS"
    env = {"AMBASSADOR_LISTEN": f"127.0.0.1:{free_port()}", var: f"file://{member}"}
    bad_setting_exits_2("ambassador", env, var, "cannot read")


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("ambassador", {"AMBASSADOR_UPSTREAMS": f"dns://{NO_NAME}:6379"}),
        ("ambassador", {"AMBASSADOR_UPSTREAMS": f"{NO_NAME}:6379"}),
        ("logshipper", {"LOGSHIPPER_ES_HOSTS": f"http://{NO_NAME}:9200"}),
        ("adapter", {"ADAPTER_TARGET": f"http://{NO_NAME}:8080/metrics"}),
    ],
)
def test_names_of_members_and_servers_that_do_not_resolve_yet_are_waited_for(
    tmp_path: Path, name: str, env: dict[str, str]
) -> None:
    """In Kubernetes a Service's DNS name may not resolve yet at start: the sidecar runs, alive
    but not ready, instead of exiting."""
    admin = free_port()
    full = {
        f"{name.upper()}_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_LISTEN": f"127.0.0.1:{free_port()}",
        "ADAPTER_LISTEN": f"127.0.0.1:{free_port()}",
        "LOGSHIPPER_STATE_DIR": str(tmp_path / "state"),
        "LOGSHIPPER_PATHS": str(tmp_path / "*.log"),
        **env,
    }
    with SidecarProcess(name, {k: v for k, v in full.items() if k.startswith(name.upper())}) as p:
        p.wait_http(f"http://127.0.0.1:{admin}/healthz")
        if "dns://" in str(env) or name == "logshipper":  # nothing to reach: not ready
            assert http_get(f"http://127.0.0.1:{admin}/readyz")[0] == 503
        wait_until(lambda: p.proc.poll() is None, 1, "still running")
        assert p.terminate() == 0


def test_auth_file_swapped_for_a_fifo_at_run_time_does_not_block_the_adapter(
    tmp_path: Path,
) -> None:
    """The auth file is re-read each second: replaced by a FIFO (or anything not a regular
    file) the read is refused at once, the answer names the file, and the process keeps
    answering (a blocking open would freeze its event loop, /healthz included)."""
    auth = tmp_path / "token"
    auth.write_text("Bearer t\n")
    admin, listen = free_port(), free_port()
    env = {
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "ADAPTER_LISTEN": f"127.0.0.1:{listen}",
        "ADAPTER_TARGET": f"http://127.0.0.1:{free_port()}/metrics",
        "ADAPTER_AUTH_FILE": str(auth),
        "ADAPTER_CACHE": "0s",
    }
    with SidecarProcess("adapter", env) as proc:
        proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
        auth.unlink()
        os.mkfifo(auth)

        def refused() -> bool:  # the file is re-read at most once a second
            status, body = http_get(f"http://127.0.0.1:{listen}/health", timeout=5)
            return status == 503 and b"not a regular file" in body

        wait_until(refused, 10, "the FIFO refused")
        assert http_get(f"http://127.0.0.1:{admin}/healthz", timeout=5)[0] == 200
        assert proc.terminate() == 0


def test_token_file_swapped_for_a_fifo_at_run_time_does_not_block_the_warloader(
    tmp_path: Path,
) -> None:
    """--watch re-reads the bearer token file for each download: replaced by a FIFO, the read
    is refused with one error naming the file and the process stays responsive."""
    site, dest, token = tmp_path / "site", tmp_path / "dest", tmp_path / "token"
    site.mkdir()
    dest.mkdir()
    (site / "app.txt").write_text("v1")
    token.write_text("t0ken\n")
    port, admin = free_port(), free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(site)]
    env = {
        "WARLOADER_SOURCES": f"http://127.0.0.1:{port}/app.txt",
        "WARLOADER_DEST": str(dest),
        "WARLOADER_WATCH": "true",
        "WARLOADER_POLL_INTERVAL": "100ms",
        "WARLOADER_BEARER_TOKEN_FILE": str(token),
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{admin}",
    }
    with background(serve), SidecarProcess("warloader", env) as proc:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/app.txt")[0] == 200, 15, "server")
        proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
        token.unlink()
        os.mkfifo(token)

        def refused() -> bool:
            return any("not a regular file" in x["msg"] for x in proc.log_lines())

        wait_until(refused, 10, "the FIFO refused")
        assert http_get(f"http://127.0.0.1:{admin}/healthz", timeout=5)[0] == 200
        assert proc.terminate() == 0
