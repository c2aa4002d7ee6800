"""Reusable sidecar containers for Kubernetes pods: logshipper, ambassador, adapter, warloader."""

__version__ = "0.1.0"
