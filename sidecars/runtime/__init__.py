"""The runtime all four sidecars share: settings, JSON logs, admin server, lifecycle, supervised
tasks, backoff."""

from sidecars.runtime.backoff import Backoff
from sidecars.runtime.lifecycle import CommonConfig, Runtime, Service, Sidecar
from sidecars.runtime.settings import ConfigError, setting

__all__ = ["Backoff", "CommonConfig", "ConfigError", "Runtime", "Service", "Sidecar", "setting"]
