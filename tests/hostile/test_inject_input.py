"""`sidecars inject` given input it must refuse: a name or port that collides with the pod's,
an unknown setting, broken YAML. Each is one line on stderr naming what is wrong, exit 2, and
nothing on stdout (a pipe into `kubectl apply` applies nothing)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

pytestmark = pytest.mark.integration

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: app
  annotations:
    sidecars.example.com/logshipper: "true"
    sidecars.example.com/logshipper-logs-volume: logs
spec:
  containers:
    - name: {container}
      image: busybox:1.36
      ports:
        - {{name: {port_name}, containerPort: {port}}}
  volumes:
    - {{name: logs, emptyDir: {{}}}}
    - {{name: {volume}, emptyDir: {{}}}}
"""
FINE = {"container": "app", "port_name": "http", "port": 8080, "volume": "data"}


def inject(args: Sequence[str], stdin: str | bytes) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [sys.executable, "-m", "sidecars.inject", *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )


def refused(args: Sequence[str], stdin: str | bytes, *words: str) -> str:
    result = inject(args, stdin)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert result.stdout == b""
    assert err.startswith("sidecars inject: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


def test_the_fine_pod_is_injected() -> None:
    """The base of the cases below is accepted: they fail for their one change only."""
    result = inject([], POD.format(**FINE))
    assert result.returncode == 0, result.stderr
    assert b"name: logshipper" in result.stdout


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"container": "logshipper"}, ["Pod/app", "container name 'logshipper'"]),
        ({"port": 9181}, ["port 9181", "container 'app'"]),
        ({"port_name": "shipper-admin"}, ["port name 'shipper-admin'"]),
        ({"volume": "logshipper-state"}, ["volume name 'logshipper-state'"]),
    ],
    ids=["container", "port", "port-name", "volume"],
)
def test_a_collision_is_one_line_naming_it(change: dict[str, object], words: list[str]) -> None:
    """A container, port number, port name or volume the sidecar needs is the pod's already."""
    refused([], POD.format(**{**FINE, **change}), *words)


def test_the_ambassadors_listener_collides_with_the_apps_port() -> None:
    """The ambassador listens on the app's port 6379: the pod's network namespace is shared."""
    pod = POD.format(**{**FINE, "port": 6379})
    args = ["--add", "ambassador", "--set", "ambassador-listen=127.0.0.1:6379"]
    refused(args, pod, "port 6379 of ambassador")


def test_two_sidecars_colliding_with_each_other() -> None:
    """A setting that moves one sidecar's port onto another's is refused too."""
    args = ["--add", "adapter", "--set", "adapter-listen=0.0.0.0:9181"]
    refused(args, POD.format(**FINE), "port 9181 of adapter", "logshipper")


@pytest.mark.parametrize(
    ("args", "text", "words"),
    [
        ([], POD.replace("logshipper-logs-volume", "logshipper-log-volume"), ["'log-volume'"]),
        ([], POD.replace("logshipper: ", "logshiper: "), ["no sidecar 'logshiper'"]),
        ([], POD.replace('"true"', '"maybe"'), ["'maybe' is not true or false"]),
        ([], POD.replace("logs-volume: logs", "logs-volume: nope"), ["volume 'nope'"]),
        ([], POD.replace("logs-volume: logs", "logs-volume: ''"), ["logshipper needs"]),
        (["--add", "warloader", "--set", "warloader-volume=data"], POD, ["its sources"]),
        (["--set", "logshipper-admin-addr=:99999"], POD, ["logshipper-admin-addr", "65535"]),
        (["--add", "sidekick"], POD, ["--add 'sidekick'"]),
        (["--set", "logshipper-index"], POD, ["KEY=VALUE"]),
        (["--kubernetes-version", "latest"], POD, ["--kubernetes-version 'latest'"]),
        (["/nonexistent/pod.yaml"], "", ["cannot read /nonexistent/pod.yaml"]),
        (["--set", "logshipper-es-password-from-secret=creds"], POD, ["expected SECRET/KEY"]),
        (
            [
                "--set",
                "logshipper-es-password-from-secret=c/p",
                "--set",
                "logshipper-es-password=x",
            ],
            POD,
            ["set one of them"],
        ),
        (["--add", "warloader", "--set", "warloader-watch=maybe"], POD, ["warloader-watch"]),
    ],
    ids=[
        "unknown-option",
        "unknown-sidecar",
        "not-a-boolean",
        "missing-volume",
        "empty-volume",
        "loader-without-sources",
        "bad-port",
        "bad-add",
        "bad-set",
        "bad-version",
        "missing-file",
        "secret-without-key",
        "secret-and-value",
        "watch-not-a-boolean",
    ],
)
def test_bad_settings_are_one_line(args: list[str], text: str, words: list[str]) -> None:
    """A typo in a key, a value that cannot work, a missing file: refused before any output."""
    refused(args, text.format(**FINE) if "{" in text else text, *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: a\n", ["not valid YAML", "line"]),
        ("a: 1\na: 2\n", ["not valid YAML", "duplicate"]),
        (b"apiVersion: v1\nkind: \xff\n", ["not UTF-8"]),
        ("kind: Pod\nmetadata: {name: a}\nspec: {containers: 3}\n", ["Pod/a", "containers"]),
        ("kind: Deployment\nmetadata: {name: d}\nspec: {}\n", ["Deployment/d", "spec.template"]),
        ("kind: List\nitems: " + "[{kind: List, items: " * 20 + "[]" + "}]" * 20, ["deeper"]),
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", ["nested too deeply"]),
        ("a: {[{b: 1}]: c}\n", ["not valid YAML", "unhashable"]),
        (
            "kind: Pod\nmetadata: {name: a, annotations: [x]}\nspec: {containers: [{name: a}]}\n",
            [
                "Pod/a",
                "annotations are not a mapping",
            ],
        ),
        (
            "kind: Job\nmetadata: {name: j}\nspec: {template: {metadata: 5}}\n",
            [
                "Job/j",
                "pod spec",
            ],
        ),
    ],
    ids=[
        "unclosed",
        "duplicate-key",
        "not-utf8",
        "containers-not-a-list",
        "no-template",
        "deep-lists",
        "deeper-than-python",
        "mapping-as-key",
        "annotations-not-a-mapping",
        "template-metadata-not-a-mapping",
    ],
)
def test_broken_yaml_is_one_line(text: str | bytes, words: list[str]) -> None:
    """YAML that does not parse or whose workload has no pod spec where one must be."""
    refused(["--add", "ambassador"], text, *words)


def _bomb(indent: str) -> str:
    """Aliases nested nine deep: a billion references when expanded."""
    levels = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join(f"*a{i - 1}" for _ in range(10))
        levels.append(f"{indent}a{i}: &a{i} [{refs}]")
    return "\n".join(levels) + "\n"


@pytest.mark.parametrize(
    ("text", "refused_with"),
    [
        ("kind: ConfigMap\ndata:\n" + _bomb("  "), None),
        (
            "kind: Pod\nmetadata:\n  name: a\n  labels:\n"
            + _bomb("    ")
            + "spec:\n  containers:\n    - {name: a, args: *a9}\n",
            None,
        ),
        (
            "kind: Pod\nmetadata:\n  name: a\n  annotations:\n"
            + _bomb("    ").replace("a9:", "sidecars.example.com/ambassador-listen:")
            + "spec:\n  containers:\n    - {name: a}\n",
            "expected a string",
        ),
    ],
    ids=["passed-through", "in-an-injected-pod", "as-an-annotation"],
)
def test_an_alias_bomb_is_neither_expanded_nor_slow(text: str, refused_with: str | None) -> None:
    """A billion references are written back as aliases (or refused where a string belongs),
    in well under the time an expansion would take."""
    start = time.monotonic()
    if refused_with:
        refused(["--add", "ambassador"], text, refused_with)
    else:
        result = inject(["--add", "ambassador"], text)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout) < 10 * len(text) + 4096
    assert time.monotonic() - start < 30


def test_odd_but_valid_input_comes_back_readable() -> None:
    """A container whose ports are no list is not a crash, a value starting with `?` is
    quoted (ruamel.yaml would write it plain inside a flow mapping and fail to read it back),
    and a flow-style pod spec gets the sidecars in block style."""
    pod = (
        "kind: Pod\nmetadata: {name: a}\n"
        "spec: {containers: [{name: a, ports: 5}], volumes: [{name: logs}]}\n"
    )
    args = ["--add", "warloader", "--set", "warloader-volume=logs"]
    args += ["--set", "warloader-sources=?x://a"]
    result = inject(args, pod)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert '{name: WARLOADER_SOURCES, value: "?x://a"}' in out
    assert "\n  initContainers:\n    - name: warloader\n" in out
    again = inject(args, out)
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode() == out


def test_input_asking_for_nothing_comes_back_byte_for_byte() -> None:
    """Empty documents, a comment-only document and an explicit end marker survive untouched
    when no workload asks for a sidecar (ruamel.yaml alone would write `null` documents)."""
    text = "---\n---\n# only a comment\n---\nkind: Service\nmetadata: {name: s}\n...\n"
    result = inject([], text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == text


def test_a_planted_injected_annotation_never_removes_the_apps_container() -> None:
    """`sidecars.example.com/injected: app` (not written by inject) names no sidecar: the
    app's container stays, and the shipper is added beside it."""
    pod = POD.format(**FINE).replace(
        '    sidecars.example.com/logshipper: "true"\n',
        '    sidecars.example.com/logshipper: "true"\n    sidecars.example.com/injected: app\n',
    )
    result = inject([], pod)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "    - name: app\n" in out and "    - name: logshipper\n" in out
