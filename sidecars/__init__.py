"""Reusable sidecar containers for Kubernetes pods: logshipper, ambassador, adapter, warloader."""

import os as _os

__version__ = "0.1.0"

# Some modules ship compiled (mypyc) beside their sources; SIDECARS_PURE=1 runs the sources.
if _os.environ.get("SIDECARS_PURE") == "1":
    from sidecars import _pure

    _pure.install()
