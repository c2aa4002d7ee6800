"""`sidecars inject` on realistic manifests: the result is valid Kubernetes 1.29-1.31 (strict
schema), passes Pod Security "restricted", sets only real settings, keeps the input's comments
and key order, and a second run changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecars.inject.workloads import workloads
from tests.k8s_support import assert_restricted, assert_sidecar_settings, sidecar_of, validate

MANIFESTS = Path(__file__).parents[1] / "inject_manifests"
VERSIONS = ("1.29.0", "1.30.0", "1.31.0")
UPSTREAMS = "dns://cache.default.svc.cluster.local:6379"
# each manifest, the flags it is injected with, and the sidecars each of its workloads gets
CASES: dict[str, tuple[list[str], dict[str, set[str]]]] = {
    "tomcat.yaml": ([], {"Deployment/tomcat": {"warloader", "logshipper"}}),
    "redis-client.yaml": ([], {"Deployment/visits": {"ambassador", "adapter"}}),
    "cronjob.yaml": ([], {"CronJob/nightly-report": {"logshipper"}}),
    "multi.yaml": (
        ["--add", "ambassador", "--set", f"ambassador-upstreams={UPSTREAMS}"],
        {
            "StatefulSet/sessions": {"ambassador"},
            "DaemonSet/node-agent": set(),  # its annotation opts it out
            "Pod/debug-shell": {"ambassador"},
        },
    ),
}


def inject(
    args: Sequence[str], stdin: str | None = None, console_script: bool = False
) -> subprocess.CompletedProcess[str]:
    if console_script:
        command = [str(Path(sys.executable).parent / "sidecars"), "inject"]
    else:
        command = [sys.executable, "-m", "sidecars.inject"]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def injected(name: str, *more: str) -> str:
    flags, _ = CASES[name]
    result = inject([str(MANIFESTS / name), *flags, *more])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def pod_specs(text: str) -> dict[str, dict[str, Any]]:
    """Each workload's label -> its pod spec (read back with PyYAML: plain data)."""
    out = {}
    for doc in yaml.safe_load_all(text):
        for w in workloads(doc):
            out[w.label] = w.template["spec"]
    return out


def sidecars_in(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    every = [*spec.get("initContainers", []), *spec["containers"]]
    return {c["name"]: c for c in every if sidecar_of(c) is not None}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("version", VERSIONS)
def test_injected_manifests_are_valid_restricted_and_use_real_settings(
    name: str, version: str
) -> None:
    """Every document validates (strict), every pod passes "restricted", every added sidecar
    sets real settings with values that parse, and the native sidecars come first."""
    out = injected(name)
    for doc in yaml.safe_load_all(out):
        validate(doc, version)
    _, expected = CASES[name]
    specs = pod_specs(out)
    assert set(specs) == set(expected)
    for label, spec in specs.items():
        assert_restricted(spec)
        ours = sidecars_in(spec)
        assert set(ours) == expected[label], label
        for c in ours.values():
            assert_sidecar_settings(label, c)
            assert_restricted({"containers": [c]})  # on its own, whatever the pod sets
            if c["name"] != "warloader":
                assert c["restartPolicy"] == "Always", c["name"]
        if ours:
            inits = [c["name"] for c in spec["initContainers"]]
            assert set(inits[: len(ours)]) == set(ours), inits  # before the app's own


def test_annotations_become_settings_mounts_and_volumes() -> None:
    """The Tomcat Deployment's annotations: the loader installs into `webapps`, the shipper
    reads `tomcat-logs` read-only with its own state volume and the app's container name."""
    spec = pod_specs(injected("tomcat.yaml"))["Deployment/tomcat"]
    ours = sidecars_in(spec)
    loader, shipper = ours["warloader"], ours["logshipper"]
    assert loader["image"] == "registry.example.com/sidecars/warloader:0.1.0"
    assert {"name": "webapps", "mountPath": "/target"} in loader["volumeMounts"]
    env = {e["name"]: e.get("value") for e in shipper["env"]}
    assert env["LOGSHIPPER_PATHS"] == "/var/log/app/*.txt"
    assert env["CONTAINER_NAME"] == "tomcat"
    assert {"POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"} <= set(env)
    mounts = {m["name"]: m for m in shipper["volumeMounts"]}
    assert mounts["tomcat-logs"] == {
        "name": "tomcat-logs",
        "mountPath": "/var/log/app",
        "readOnly": True,
    }
    assert {"name": "logshipper-state", "emptyDir": {}} in spec["volumes"]
    assert [c["name"] for c in spec["initContainers"]] == ["warloader", "logshipper"]


def test_template_annotations_win_and_flags_win_over_both() -> None:
    """Redis client: the ambassador's listen address comes from the workload's annotation,
    the adapter's rules from a ConfigMap; --set overrides an annotation and --registry/--tag
    name the images."""
    out = injected(
        "redis-client.yaml",
        "--set",
        "ambassador-policy=least_connections",
        "--registry",
        "registry.corp.test/platform/",
        "--tag",
        "1.2.3",
    )
    ours = sidecars_in(pod_specs(out)["Deployment/visits"])
    env = {e["name"]: e.get("value") for e in ours["ambassador"]["env"]}
    assert env["AMBASSADOR_LISTEN"] == "127.0.0.1:6379"
    assert env["AMBASSADOR_POLICY"] == "least_connections"
    assert ours["adapter"]["image"] == "registry.corp.test/platform/adapter:1.2.3"
    adapter_env = {e["name"]: e.get("value") for e in ours["adapter"]["env"]}
    assert adapter_env["ADAPTER_RULES"] == "/etc/adapter/rules.yaml"
    ports = {p["name"]: p["containerPort"] for p in ours["adapter"]["ports"]}
    assert ports == {"adapter-admin": 9183, "adapter-health": 9280}


@pytest.mark.parametrize("name", CASES)
def test_a_second_run_changes_nothing(name: str) -> None:
    """Injecting the injected output again (through stdin) gives it back byte for byte."""
    first = injected(name)
    flags, _ = CASES[name]
    again = inject(flags, stdin=first)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first


def _comments(text: str) -> list[str]:
    return [m.group(0).strip() for m in re.finditer(r"#[^\n]*", text) if "sha256=" not in m[0]]


@pytest.mark.parametrize("name", CASES)
def test_comments_and_key_order_are_kept(name: str) -> None:
    """Every comment of the input is in the output, in the same order, and every mapping of
    the input keeps its keys in their order (added keys aside)."""
    source = (MANIFESTS / name).read_text()
    out = injected(name)
    assert _comments(source) == [c for c in _comments(out) if c in _comments(source)]
    assert set(_comments(source)) <= set(_comments(out))

    def check(before: Any, after: Any) -> None:
        if isinstance(before, dict):
            kept = [k for k in after if k in before]
            assert kept == list(before), kept
            for key, value in before.items():
                check(value, after[key])
        elif isinstance(before, list) and len(before) == len(after):
            for b, a in zip(before, after, strict=True):
                check(b, a)

    for before, after in zip(yaml.safe_load_all(source), yaml.safe_load_all(out), strict=True):
        check(before, after)


def test_stdin_and_file_give_the_same_output_and_the_console_script_works() -> None:
    """`-`, no argument (stdin) and a file name read the same input; `sidecars inject` is
    the same program as `python -m sidecars.inject`."""
    source = (MANIFESTS / "tomcat.yaml").read_text()
    by_file = injected("tomcat.yaml")
    for args in ([], ["-"]):
        result = inject(args, stdin=source)
        assert result.returncode == 0, result.stderr
        assert result.stdout == by_file
    script = inject([str(MANIFESTS / "tomcat.yaml")], console_script=True)
    assert script.returncode == 0, script.stderr
    assert script.stdout == by_file


def test_classic_sidecars_for_clusters_before_1_29() -> None:
    """--kubernetes-version 1.28: the long-running sidecars become ordinary containers after
    the app (no restartPolicy, no startup probe); the loader stays an init container."""
    out = injected("tomcat.yaml", "--kubernetes-version", "1.28")
    for doc in yaml.safe_load_all(out):
        validate(doc, VERSIONS[0])
    spec = pod_specs(out)["Deployment/tomcat"]
    assert_restricted(spec)
    assert [c["name"] for c in spec["initContainers"]] == ["warloader"]
    assert [c["name"] for c in spec["containers"]] == ["tomcat", "logshipper"]
    assert "restartPolicy" not in spec["containers"][1]
    assert "startupProbe" not in spec["containers"][1]
    # and going native later replaces them: no sidecar left twice
    native = inject([], stdin=out)
    assert native.returncode == 0, native.stderr
    assert native.stdout == injected("tomcat.yaml")


def test_a_classic_sidecar_in_a_job_is_refused() -> None:
    """A classic sidecar never exits, so the Job would never complete: one line, exit 2."""
    result = inject([str(MANIFESTS / "cronjob.yaml"), "--kubernetes-version", "1.27"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "CronJob/nightly-report" in result.stderr and "native" in result.stderr


def test_workloads_asking_for_nothing_pass_through_unchanged() -> None:
    """Without flags, a file whose workloads carry no annotations comes back as it went in."""
    source = (MANIFESTS / "multi.yaml").read_text()
    result = inject([], stdin=source)
    assert result.returncode == 0, result.stderr
    assert result.stdout == source


def test_a_secret_setting_comes_from_a_secret_and_a_watching_loader_is_a_sidecar() -> None:
    """`<sidecar>-<setting>-from-secret: SECRET/KEY` is a secretKeyRef, never the value; the
    warloader with watch=true stays up, so it is a native sidecar whose startup probe waits for
    every source in place (/readyz), while the one-shot loader has no probes."""
    out = injected(
        "tomcat.yaml",
        "--set",
        "logshipper-es-password-from-secret=es-credentials/password",
        "--set",
        "warloader-watch=true",
    )
    for doc in yaml.safe_load_all(out):
        for version in VERSIONS:
            validate(doc, version)
    spec = pod_specs(out)["Deployment/tomcat"]
    assert_restricted(spec)
    ours = sidecars_in(spec)
    env = {e["name"]: e for e in ours["logshipper"]["env"]}
    assert env["LOGSHIPPER_ES_PASSWORD"] == {
        "name": "LOGSHIPPER_ES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "es-credentials", "key": "password"}},
    }
    loader = ours["warloader"]
    assert_sidecar_settings("tomcat", loader)
    assert loader["restartPolicy"] == "Always"
    assert loader["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "loader-admin"}
    assert {"name": "loader-admin", "containerPort": 9184} in loader["ports"]
