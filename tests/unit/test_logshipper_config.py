"""logshipper settings: parsing, cross-field rules, and the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecars.logshipper.config import Config
from sidecars.logshipper.service import SIDECAR
from sidecars.runtime import ConfigError
from sidecars.runtime.settings import env_name, flag_name, specs

pytestmark = pytest.mark.unit
README = Path(__file__).resolve().parents[2] / "sidecars" / "logshipper" / "README.md"


def test_defaults_and_lists() -> None:
    c = SIDECAR.load_config([], {"LOGSHIPPER_PATHS": "/a/*.log, /b/**/*.log,"})
    assert c.paths == ("/a/*.log", "/b/**/*.log")
    assert c.admin_addr == ("0.0.0.0", 9181)
    assert c.es_verify_certs and c.data_stream and c.index == ""
    assert c.target == "logs-app-default"  # Elastic's data stream naming scheme
    assert c.index_template_priority > 500  # above the built-in logs-*-* templates
    assert c.index_replicas == 0
    c.check()


def test_the_target_is_named_from_dataset_and_namespace_unless_given() -> None:
    """Data streams by default (`logs-<dataset>-<namespace>`), dated plain indices as an
    option; an explicit LOGSHIPPER_INDEX wins over both."""
    env = {"LOGSHIPPER_DATASET": "nginx.access", "LOGSHIPPER_NAMESPACE": "prod"}
    assert SIDECAR.load_config([], env).target == "logs-nginx.access-prod"
    plain = SIDECAR.load_config([], {**env, "LOGSHIPPER_DATA_STREAM": "false"})
    assert plain.target == "logshipper-nginx.access-prod-%Y.%m.%d"
    given = SIDECAR.load_config([], {**env, "LOGSHIPPER_INDEX": "mine"})
    assert given.target == "mine"
    assert given.stream_parts == ("nginx.access", "prod")


def test_a_data_stream_named_by_the_scheme_gives_the_documents_its_parts() -> None:
    """data_stream.dataset and .namespace must match the stream the documents are in: an
    INDEX of the form logs-<dataset>-<namespace> wins over the two settings."""
    c = SIDECAR.load_config([], {"LOGSHIPPER_INDEX": "logs-nginx.error-prod"})
    assert c.stream_parts == ("nginx.error", "prod")
    plain = {"LOGSHIPPER_INDEX": "logs-nginx-prod", "LOGSHIPPER_DATA_STREAM": "false"}
    assert SIDECAR.load_config([], plain).stream_parts == ("app", "default")
    odd = SIDECAR.load_config([], {"LOGSHIPPER_INDEX": "logs-a-b-c"})
    assert odd.stream_parts == ("app", "default")


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ES_HOSTS", "ftp://x"),
        ("ES_HOSTS", "http://h:99999"),
        ("ES_HOSTS", ""),
        ("PATHS", ","),
        ("INDEX", "Upper"),
        ("INDEX", "a b"),
        ("MULTILINE_PATTERN", "(["),
        ("BATCH_MAX_BYTES", "1"),
        ("READ_FROM", "middle"),
        ("DATASET", "has-dash"),
        ("NAMESPACE", ""),
        ("NAMESPACE", "Prod"),
        ("DATA_RETENTION", "7 days"),
        ("ILM_POLICY", "a,b"),
        ("INDEX_REPLICAS", "-1"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        SIDECAR.load_config([], {f"LOGSHIPPER_{var}": value})
    assert err.value.problems[0].startswith(f"LOGSHIPPER_{var}=")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LOGSHIPPER_ES_PASSWORD": "p"}, "LOGSHIPPER_ES_USERNAME"),
        ({"LOGSHIPPER_ES_API_KEY": "k", "LOGSHIPPER_ES_USERNAME": "u"}, "either"),
        ({"LOGSHIPPER_ES_CLIENT_CERT": "/c.pem"}, "LOGSHIPPER_ES_CLIENT_KEY"),
        ({"LOGSHIPPER_BATCH_MAX_BYTES": "1MiB", "LOGSHIPPER_QUEUE_MAX_BYTES": "512KiB"}, "QUEUE"),
        ({"LOGSHIPPER_INDEX": "logs-%Y"}, "data stream"),
        ({"LOGSHIPPER_DATA_STREAM": "false", "LOGSHIPPER_DATA_RETENTION": "7d"}, "DATA_STREAM"),
    ],
)
def test_cross_field_rules(env: dict[str, str], needle: str) -> None:
    c = SIDECAR.load_config([], env)
    with pytest.raises(ConfigError) as err:
        c.check()
    assert needle in err.value.problems[0]
    assert "'p'" not in err.value.problems[0] and "'k'" not in err.value.problems[0]


def test_readme_settings_table_matches_the_config() -> None:
    rows = re.findall(
        r"^\| `(LOGSHIPPER_\w+)` \| `(--[\w-]+)` \| (.*?) \| (.*?) \|$", README.read_text(), re.M
    )
    defaults = SIDECAR._defaults()
    expected = []
    for name, spec in specs(Config):
        default = defaults.get(name, spec.default)
        expected.append(
            (
                env_name("LOGSHIPPER", name),
                flag_name(name),
                f"`{default}`" if default else "(empty)",
                spec.help,
            )
        )
    assert rows == expected
