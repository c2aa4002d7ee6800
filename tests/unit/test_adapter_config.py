"""adapter settings: defaults, validation, and the README's table matching the code."""

from __future__ import annotations

import re

import pytest

from sidecars.adapter.appclient import AppClient
from sidecars.adapter.service import SIDECAR
from sidecars.adapter.service import _check as check
from sidecars.runtime import ConfigError
from sidecars.runtime.settings import env_name, flag_name, specs
from tests.helpers import ROOT

pytestmark = pytest.mark.unit


def test_defaults() -> None:
    config = SIDECAR.load_config([], {})
    assert config.listen == ("0.0.0.0", 9280) and config.admin_addr == ("0.0.0.0", 9183)
    assert config.mode == "health-from-metrics" and config.cache == 1.0
    assert config.max_bytes == 8 << 20


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADAPTER_TARGET": "ftp://x/metrics"}, "ADAPTER_TARGET='ftp://x/metrics'"),
        ({"ADAPTER_TARGET": "/metrics"}, "http:// or https://"),
        ({"ADAPTER_PATHS": "/a"}, "expected /path=/app/path pairs"),
        ({"ADAPTER_PATHS": "a=/b"}, "expected /path=/app/path pairs"),
        ({"ADAPTER_HEALTH_PATH": "health"}, "ADAPTER_HEALTH_PATH='health'"),
        ({"ADAPTER_METRIC_PREFIX": "1x"}, "metric name prefix"),
        ({"ADAPTER_MAX_BYTES": "10"}, "at least 1024"),
        ({"ADAPTER_TIMEOUT": "0s"}, "ADAPTER_TIMEOUT"),
        ({"ADAPTER_MODE": "both"}, "expected one of health-from-metrics"),
    ],
)
def test_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        SIDECAR.load_config([], env)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADAPTER_PATHS": "/health=/actuator/health"}, "ADAPTER_PATHS='/health'"),
        ({"ADAPTER_PATHS": "/a=/b,/a=/c"}, "ADAPTER_PATHS='/a'"),
        ({"ADAPTER_MODE": "paths"}, "at least one /path=/app/path"),
        (
            {
                "ADAPTER_MODE": "metrics-from-health",
                "ADAPTER_RULES": "[{name: a, metric: x, op: '>', threshold: 1}]",
            },
            "rules need mode health-from-metrics",
        ),
    ],
)
def test_cross_field_validation(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(SIDECAR.load_config([], env))
    assert message in str(err.value)


def test_valid_combinations() -> None:
    env = {"ADAPTER_MODE": "metrics-from-health", "ADAPTER_PATHS": "/health=/h,/x=/y"}
    assert check(SIDECAR.load_config([], env)) == []
    env = {"ADAPTER_RULES": "[{name: a, metric: x, op: '>', threshold: 1}]"}
    assert [r.name for r in check(SIDECAR.load_config([], env))] == ["a"]


def test_forwarding_uses_only_scheme_and_host_of_the_target() -> None:
    client = AppClient("http://127.0.0.1:8080/metrics?x=1")
    assert (client.host, client.port, client.authority, client.https) == (
        "127.0.0.1",
        8080,
        "127.0.0.1:8080",
        False,
    )
    assert (AppClient("https://app.local/x").port, AppClient("http://[::1]/").host) == (443, "::1")


def test_readme_settings_table_matches_the_code() -> None:
    readme = (ROOT / "sidecars/adapter/README.md").read_text()
    rows = re.findall(
        r"^\| `(ADAPTER_[A-Z_]+)` \| `(--[a-z-]+)` \| `([^`]*)` \| (.+?) \|$", readme, re.M
    )
    defaults = SIDECAR._defaults()
    expected = [
        (env_name("ADAPTER", name), flag_name(name), defaults.get(name, spec.default), spec.help)
        for name, spec in specs(SIDECAR.config)
    ]
    assert rows == expected
