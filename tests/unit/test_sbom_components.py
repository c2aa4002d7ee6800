"""docker/sbom's CycloneDX components: package URLs with the names and versions encoded as
the purl specification asks (pypi names normalised; '+', '~' and an epoch's ':' in Debian
versions). The dpkg lookup itself runs in the base: tests/e2e/test_supply_chain.py."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def load_sbom() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("docker_sbom", str(ROOT / "docker" / "sbom"))
    spec = importlib.util.spec_from_loader("docker_sbom", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


SBOM = load_sbom()


def test_pypi_purl_normalises_the_name() -> None:
    """prometheus_client 0.26.0 -> pkg:pypi/prometheus-client@0.26.0; the name stays as given."""
    component = SBOM.python_component({"Name": "prometheus_client", "Version": "0.26.0"})
    assert component["purl"] == "pkg:pypi/prometheus-client@0.26.0"
    assert component["name"] == "prometheus_client" and component["type"] == "library"


def test_deb_purl_encodes_name_and_version() -> None:
    """'+' in a name or version, an epoch's ':' are percent-encoded; '~' is kept."""
    entry = {"version": "1:12.2.0-14+deb12u1~x", "arch": "amd64", "files": 2}
    component = SBOM.debian_component("libstdc++6", entry, "debian-12")
    assert component["purl"] == (
        "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1~x?arch=amd64&distro=debian-12"
    )
    assert component["version"] == "1:12.2.0-14+deb12u1~x"
    assert component["properties"] == [{"name": "sidecars:files", "value": "2"}]
