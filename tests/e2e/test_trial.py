"""The local trial end to end: `scripts/trial` brings the four example pods up with docker
compose, and each pattern is checked from outside and over its pod's localhost; `scripts/trial
down` leaves no container, volume or network behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import ROOT, docker
from tests.helpers import http_get, wait_until

# the first test brings the trial up: on a fresh machine that builds the local images too
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

PROJECT = "sidecars-trial"
LINES = 2000  # the demo app's log lines (TRIAL_LOG_LINES)
EXTRA = 500  # lines written right before the pod stops
ES = "http://127.0.0.1:19200"
TOMCAT = "http://127.0.0.1:18080"
HEALTH = "http://127.0.0.1:19280/health"
METRICS_APP = "http://127.0.0.1:18081"
AMBASSADOR_ADMIN = "http://127.0.0.1:19182"


def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    files = ["-f", "docker-compose.yml"]
    if docker("image", "inspect", "tomcat:10.1-jre17", check=False).returncode != 0:
        files += ["-f", "docker-compose.local.yml"]
    return subprocess.run(
        ["docker", "compose", *files, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SAMPLE_WAR_SHA256": "unused"},
        stdin=subprocess.DEVNULL,
    )


def in_pod(pod: str, code: str, timeout: float = 60) -> str:
    """Run Python in a throwaway container that joins `pod`'s network namespace, as one more
    container of that pod would; returns its stdout."""
    pod_id = compose("ps", "-q", pod).stdout.strip()
    assert pod_id, f"{pod} is not running"
    result = docker(
        "run",
        "--rm",
        f"--network=container:{pod_id}",
        "--entrypoint",
        "/opt/venv/bin/python",
        "sidecars/logshipper:latest",
        "-c",
        code,
        timeout=timeout,
    )
    return result.stdout


def es(path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    """POST to the trial's Elasticsearch (a JSON body, or none)."""
    data = b"" if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{ES}{path}", data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def es_count() -> int:
    try:
        return int(es("/logs-trial/_count", {"query": {"match_all": {}}})["count"])  # type: ignore[call-overload]
    except OSError:
        return -1


def distinct_messages() -> int:
    # the logshipper's index template maps `message` as text only (no keyword to aggregate
    # on), so the messages are fetched and counted here; LINES is far below the result window
    query = {"size": LINES + 100, "_source": ["message"], "query": {"match_all": {}}}
    hits = es("/logs-trial/_search", query)["hits"]["hits"]  # type: ignore[index]
    return len({hit["_source"]["message"] for hit in hits})


def trial_resources() -> list[str]:
    found = []
    for kind in ("container", "volume", "network"):
        args = [kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        if kind == "container":
            args = ["ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        found += docker(*args).stdout.split()
    return found


@pytest.fixture(scope="module")
def trial(images: object) -> Iterator[None]:
    env = {**os.environ, "TRIAL_LOG_LINES": str(LINES)}
    up = subprocess.run(
        [str(ROOT / "scripts" / "trial")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr[-4000:]
        assert "Where to look" in up.stdout
        yield
    finally:
        down = subprocess.run(
            [str(ROOT / "scripts" / "trial"), "down"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert down.returncode == 0, down.stderr[-2000:]
        assert trial_resources() == [], "the trial left containers, volumes or networks"


def test_tomcat_serves_the_war_warloader_installed(trial: None) -> None:
    wait_until(lambda: http_get(f"{TOMCAT}/sample/")[0] == 200, 120, "Tomcat deploys sample.war")
    assert b"Hello from sample.war" in http_get(f"{TOMCAT}/sample/")[1]
    inside = in_pod(
        "war-pod",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/sample/').read())",
    )
    assert "Hello from sample.war" in inside


def test_every_log_line_arrives_once(trial: None) -> None:
    wait_until(lambda: es_count() >= LINES, 180, f"{LINES} lines in Elasticsearch")
    es("/logs-trial/_refresh")
    # as many documents as lines, and as many distinct messages: each line once
    assert es_count() == LINES
    assert distinct_messages() == LINES


def test_ambassador_reaches_all_members_and_survives_one_stopping(trial: None) -> None:
    run_ids = """
import socket, sys
seen = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as s:
        s.sendall(b"INFO server\\r\\n")
        data = b""
        while b"run_id:" not in data or not data.split(b"run_id:")[1].count(b"\\r\\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        seen.append(data.split(b"run_id:")[1].split(b"\\r\\n")[0].decode())
print(" ".join(seen))
"""
    wait_until(lambda: http_get(f"{AMBASSADOR_ADMIN}/readyz")[0] == 200, 60, "ambassador ready")
    assert len(set(in_pod("ambassador-pod", run_ids).split())) == 3
    assert compose("stop", "redis-2").returncode == 0
    # every connection keeps succeeding while one member is gone: at most two members answer
    seen = in_pod("ambassador-pod", run_ids).split()
    assert len(seen) == 30 and len(set(seen)) <= 2
    assert compose("start", "redis-2").returncode == 0
    wait_until(
        lambda: len(set(in_pod("ambassador-pod", run_ids).split())) == 3,
        90,
        "the restarted member is re-admitted",
    )


def test_health_follows_the_apps_metrics(trial: None) -> None:
    wait_until(lambda: http_get(HEALTH)[0] == 200, 60, "/health passes")
    assert json.loads(http_get(HEALTH)[1])["status"] == "pass"
    subprocess.run(
        ["curl", "-fsS", "-X", "POST", f"{METRICS_APP}/errors?ratio=0.5"],
        check=True,
        capture_output=True,
        timeout=10,
    )
    wait_until(lambda: http_get(HEALTH)[0] == 503, 60, "/health fails with the rule")
    assert json.loads(http_get(HEALTH)[1])["status"] == "fail"
    subprocess.run(
        ["curl", "-fsS", "-X", "POST", f"{METRICS_APP}/errors?ratio=0"],
        check=True,
        capture_output=True,
        timeout=10,
    )
    wait_until(lambda: http_get(HEALTH)[0] == 200, 60, "/health passes again")
    polls = compose("logs", "--no-log-prefix", "poller").stdout.splitlines()
    assert {json.loads(p)["status"] for p in polls if p.startswith("{")} >= {200}


def test_stopping_the_pod_lets_logshipper_deliver_everything(trial: None) -> None:
    wait_until(lambda: es_count() >= LINES, 180, "the first lines delivered")
    # a last burst right before the pod stops: the shipper must deliver it before it exits
    burst = (
        "import time\n"
        "with open('/var/log/app/app.log', 'a') as f:\n"
        f"    for n in range(1, {EXTRA} + 1):\n"
        "        f.write(f'{time.time()} INFO last words {n}\\n')\n"
    )
    assert compose("exec", "-T", "logging-app", "/opt/venv/bin/python", "-c", burst).returncode == 0
    start = time.monotonic()
    result = compose("stop", "logging-app", "logshipper", "logging-pod", timeout=120)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    exit_code = docker(
        "inspect", "-f", "{{.State.ExitCode}}", compose("ps", "-aq", "logshipper").stdout.strip()
    ).stdout.strip()
    assert exit_code == "0"
    es("/logs-trial/_refresh")
    assert es_count() == LINES + EXTRA
