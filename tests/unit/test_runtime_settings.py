"""Settings: flags win over env, every bad value is named, defaults parse, secrets stay hidden."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sidecars.runtime import CommonConfig, ConfigError, setting
from sidecars.runtime.settings import (
    boolean,
    build_parser,
    choice,
    duration,
    host_port,
    integer,
    listing,
    load,
    redacted,
    size,
    unknown_variables,
)


@dataclass(frozen=True, slots=True)
class Demo(CommonConfig):
    workers: int = setting("4", "worker count", integer(1, 64))
    hosts: tuple[str, ...] = setting("a,b", "hosts", listing(str))
    password: str = setting("", "the password", secret=True)
    verbose: bool = setting("false", "chatty", boolean)


def test_defaults_are_typed() -> None:
    cfg = load(Demo, "DEMO", [], {})
    assert cfg.workers == 4
    assert cfg.hosts == ("a", "b")
    assert cfg.admin_addr == ("0.0.0.0", 9180)
    assert cfg.shutdown_timeout == 20.0
    assert cfg.log_level == "info"


def test_env_is_read_and_flag_wins() -> None:
    env = {"DEMO_WORKERS": "8", "DEMO_VERBOSE": "yes"}
    assert load(Demo, "DEMO", [], env).workers == 8
    cfg = load(Demo, "DEMO", ["--workers", "9"], env)
    assert cfg.workers == 9 and cfg.verbose is True


def test_boolean_flag_may_stand_alone_or_take_a_value() -> None:
    assert load(Demo, "DEMO", ["--verbose"], {}).verbose is True
    assert load(Demo, "DEMO", ["--verbose", "false"], {"DEMO_VERBOSE": "true"}).verbose is False
    assert load(Demo, "DEMO", ["--verbose=yes"], {}).verbose is True


def test_per_sidecar_default_overrides_common_default() -> None:
    cfg = load(Demo, "DEMO", [], {}, {"admin_addr": "0.0.0.0:9999"})
    assert cfg.admin_addr == ("0.0.0.0", 9999)


def test_every_bad_value_is_reported_with_name_value_and_rule() -> None:
    with pytest.raises(ConfigError) as err:
        load(Demo, "DEMO", ["--workers=0"], {"DEMO_LOG_LEVEL": "loud", "DEMO_VERBOSE": "maybe"})
    problems = err.value.problems
    assert len(problems) == 3
    assert "--workers (DEMO_WORKERS)='0': expected at least 1" in problems
    assert "DEMO_LOG_LEVEL='loud': expected one of debug, info, warning, error" in problems
    assert "DEMO_VERBOSE='maybe': expected true or false" in problems


def test_secret_values_never_appear() -> None:
    @dataclass(frozen=True, slots=True)
    class Secretive(CommonConfig):
        token: int = setting("0", "a numeric token", integer(), secret=True)

    with pytest.raises(ConfigError) as err:
        load(Secretive, "S", [], {"S_TOKEN": "hunter2"})
    assert "hunter2" not in str(err.value)
    cfg = load(Demo, "DEMO", [], {"DEMO_PASSWORD": "hunter2"})
    assert redacted(cfg)["password"] == "(hidden)"
    assert "hunter2" not in build_parser(Demo, "demo", "DEMO", "", {}).format_help()


def test_credentials_in_urls_never_appear() -> None:
    @dataclass(frozen=True, slots=True)
    class Urls(CommonConfig):
        target: str = setting("", "a URL", choice("", "http://ok"))
        hosts: tuple[str, ...] = setting("", "URLs", listing(str))

    with pytest.raises(ConfigError) as err:
        load(Urls, "U", [], {"U_TARGET": "https://bob:hunter2@app:8443/metrics"})
    assert "hunter2" not in str(err.value) and "bob" not in str(err.value)
    assert "https://(hidden)@app:8443/metrics" in str(err.value)
    cfg = load(Urls, "U", [], {"U_HOSTS": "http://a:b@es1:9200,http://es2:9200"})
    assert redacted(cfg)["hosts"] == ["http://(hidden)@es1:9200", "http://es2:9200"]


def test_help_lists_every_setting_with_env_and_default() -> None:
    text = " ".join(build_parser(Demo, "demo", "DEMO", "Demo.", {}).format_help().split())
    for flag, env in [
        ("--workers", "DEMO_WORKERS"),
        ("--admin-addr", "DEMO_ADMIN_ADDR"),
        ("--log-level", "DEMO_LOG_LEVEL"),
        ("--hosts", "DEMO_HOSTS"),
    ]:
        assert flag in text and f"env {env}" in text
    assert "default '4'" in text


def test_unknown_prefixed_variables_are_found() -> None:
    env = {"DEMO_WORKERZ": "1", "DEMO_WORKERS": "2", "OTHER_X": "1"}
    assert unknown_variables(Demo, "DEMO", env) == ["DEMO_WORKERZ"]


@pytest.mark.parametrize(
    ("parser", "raw", "expected"),
    [
        (duration(), "250ms", 0.25),
        (duration(), "2m", 120.0),
        (duration(), "1.5", 1.5),
        (size(), "64KiB", 65536),
        (size(), "10MB", 10 << 20),
        (size(), "512", 512),
        (host_port(), ":80", ("127.0.0.1", 80)),
        (host_port("0.0.0.0"), "[::1]:9000", ("::1", 9000)),
        (host_port(), "example.org:443", ("example.org", 443)),
        (listing(integer()), " 1, 2,,3 ", (1, 2, 3)),
        (choice("a", "b"), "B", "b"),
        (boolean, "off", False),
    ],
)
def test_parsers_accept(parser: object, raw: str, expected: object) -> None:
    assert parser(raw) == expected  # type: ignore[operator]


@pytest.mark.parametrize(
    ("parser", "raw"),
    [
        (duration(), "soon"),
        (duration(0, 10), "11s"),
        (size(), "1TB"),
        (host_port(), "nohost"),
        (host_port(), "h:70000"),
        (integer(), "1.5"),
        (choice("a"), "c"),
        # numbers are ASCII digits of bounded length: never a huge int, inf or another script
        (integer(), "9" * 16),
        (integer(), "1_000"),
        (integer(), "\u0663"),
        (size(), "9" * 16),
        (size(), "\u0663KiB"),
        (size(), "999999999999999GiB"),
        (duration(), "1" * 400 + "h"),
        (host_port(), "h:\u0663"),
    ],
)
def test_parsers_reject(parser: object, raw: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parser(raw)  # type: ignore[operator]
