"""What inject knows of each sidecar: its settings' names, ports, resources, volumes.

The sidecars' own packages are not imported here (inject ships apart from them); a unit test
checks that these names match each sidecar's declared settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecars.runtime.lifecycle import CommonConfig
from sidecars.runtime.settings import specs

ANNOTATION_PREFIX = "sidecars.example.com/"
INJECTED = ANNOTATION_PREFIX + "injected"
DEFAULT_REGISTRY = "registry.example.com/sidecars"
IMAGE_USER = 65532  # the images' numeric USER

# the settings every sidecar has come from the runtime, which inject may import
_COMMON = tuple(name for name, _ in specs(CommonConfig))


def _settings(names: str) -> tuple[str, ...]:
    return _COMMON + tuple(names.split())


@dataclass(frozen=True)
class Sidecar:
    name: str
    settings: tuple[str, ...]  # setting names, as the sidecar declares them
    admin_port: int
    admin_port_name: str
    requests: tuple[str, str]  # cpu, memory
    limits: tuple[str, str]
    long_running: bool = True  # False: an init container that exits (warloader)
    listen_port: int | None = None  # the default port of its `listen` setting, if it has one
    options: dict[str, str] = field(default_factory=dict)  # inject's own keys -> meaning


LOGSHIPPER = Sidecar(
    "logshipper",
    _settings(
        "paths exclude es_hosts data_stream dataset namespace index index_template "
        "index_template_priority index_replicas ilm_policy data_retention state_dir read_from "
        "es_username es_password es_api_key es_ca_file es_client_cert es_client_key "
        "es_verify_certs es_gzip es_timeout es_dead_backoff_max batch_max_bytes batch_max_docs "
        "flush_interval max_in_flight queue_max_bytes max_line_size partial_flush "
        "multiline_pattern multiline_max_lines multiline_timeout json json_target timestamp_field "
        "timestamp_regex rescan_interval poll_interval follow_symlinks max_files rotate_wait "
        "max_open_files checkpoint_interval retry_max_backoff dead_letter_max_size "
        "dead_letter_index pod_name pod_namespace node_name container_name pod_uid pod_labels_file"
    ),
    9181,
    "shipper-admin",
    ("100m", "48Mi"),
    ("1", "96Mi"),
    options={"logs-volume": "the pod's volume holding the app's log files (required)"},
)
AMBASSADOR = Sidecar(
    "ambassador",
    _settings(
        "config listen upstreams mode policy hash_header connect_timeout request_timeout "
        "idle_timeout header_timeout max_header_size max_connections max_pending "
        "member_max_connections slow_start pool_size retries retry_budget health_check "
        "health_interval health_timeout health_fall health_rise eject_failures eject_time "
        "eject_max_time dns_interval dns_family dns_server file_interval tls tls_server_name "
        "tls_ca_file tls_verify tls_cert_file tls_key_file tls_min_version listen_tls_cert_file "
        "listen_tls_key_file listen_tls_client_ca_file listen_tls_min_version "
        "listen_tls_handshake_timeout redis_hash_tag "
        "redis_rehash redis_max_bulk redis_max_array "
        "memcached_max_value"
    ),
    9182,
    "amb-admin",
    ("100m", "32Mi"),
    ("1", "64Mi"),
    listen_port=7000,
)
ADAPTER = Sidecar(
    "adapter",
    _settings(
        "listen target rules mode health_path metrics_path metric_prefix paths cache timeout "
        "max_bytes auth_file ca_file"
    ),
    9183,
    "adapter-admin",
    ("50m", "32Mi"),
    ("500m", "64Mi"),
    listen_port=9280,
    options={"rules-configmap": "a ConfigMap whose rules.yaml holds the health rules"},
)
WARLOADER = Sidecar(
    "warloader",
    _settings(
        "sources dest extract watch concurrency max_attempts retry_delay timeout "
        "download_min_rate download_min_rate_window download_deadline max_download_size "
        "bearer_token_file basic_auth_file registry_auth_file plain_http_registries "
        "max_manifest_size ca_file tls_verify max_extract_size max_extract_files "
        "max_extract_ratio owner file_mode dir_mode progress_interval poll_interval"
    ),
    9184,
    "loader-admin",
    ("50m", "48Mi"),
    ("500m", "96Mi"),
    long_running=False,
    options={"volume": "the pod's volume to install the artifacts into (required)"},
)

# The order they run in: the loader installs first, then the long-running ones start.
SIDECARS: dict[str, Sidecar] = {s.name: s for s in (WARLOADER, LOGSHIPPER, AMBASSADOR, ADAPTER)}

# Volumes inject adds (owned by the sidecar, replaced on a second run).
STATE_VOLUME = "logshipper-state"
PODINFO_VOLUME = "logshipper-podinfo"
RULES_VOLUME = "adapter-rules"
OWN_VOLUMES = {"logshipper": (STATE_VOLUME, PODINFO_VOLUME), "adapter": (RULES_VOLUME,)}
