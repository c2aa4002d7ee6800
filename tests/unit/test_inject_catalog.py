"""What `sidecars inject` knows of each sidecar (it imports none of them) matches the sidecars:
the same settings in the same order, the same admin ports and the adapter's listen port."""

from __future__ import annotations

import importlib

import pytest

from sidecars.inject.catalog import SIDECARS
from sidecars.runtime.settings import specs


@pytest.mark.parametrize("name", SIDECARS)
def test_the_catalog_names_every_setting_of_the_sidecar_in_its_order(name: str) -> None:
    config = importlib.import_module(f"sidecars.{name}.config").Config
    assert SIDECARS[name].settings == tuple(n for n, _ in specs(config))


@pytest.mark.parametrize("name", SIDECARS)
def test_the_catalog_has_the_sidecars_admin_port(name: str) -> None:
    service = importlib.import_module(f"sidecars.{name}.service")
    assert SIDECARS[name].admin_port == service.SIDECAR.admin_port


@pytest.mark.parametrize("name", SIDECARS)
def test_inject_options_never_shadow_a_setting(name: str) -> None:
    """`logshipper-logs-volume` must never also mean a setting `logs_volume`."""
    sidecar = SIDECARS[name]
    assert not {o.replace("-", "_") for o in sidecar.options} & set(sidecar.settings)


@pytest.mark.parametrize("name", SIDECARS)
def test_the_listen_port_is_the_sidecars_default(name: str) -> None:
    config = importlib.import_module(f"sidecars.{name}.config").Config
    listen = dict(specs(config)).get("listen")
    port = SIDECARS[name].listen_port
    assert (listen is None and port is None) or listen.default.endswith(f":{port}")
