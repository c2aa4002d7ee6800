"""logshipper settings (`LOGSHIPPER_*` variables or flags)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sidecars.runtime import CommonConfig, ConfigError, setting
from sidecars.runtime.checks import readable_file
from sidecars.runtime.settings import boolean, choice, duration, integer, listing, size
from sidecars.runtime.urls import parse_http_url


def _regex(raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"expected a regular expression ({exc})") from None
    return raw


def _url(raw: str) -> str:
    url = parse_http_url(raw)
    if url.userinfo:  # it would be logged, and credentials are settings of their own
        raise ValueError(
            "expected no user:password@ in the URL (use LOGSHIPPER_ES_USERNAME and "
            "LOGSHIPPER_ES_PASSWORD, or LOGSHIPPER_ES_API_KEY)"
        )
    if url.query:
        raise ValueError("expected no ?query in the URL (a path prefix is allowed)")
    return raw.strip().rstrip("/")


# an API key as Elasticsearch encodes it: base64 (or base64url) of id:key, sent as it is
_API_KEY = re.compile(r"[A-Za-z0-9+/_=-]+")


def _api_key(raw: str) -> str:
    value = raw.strip()
    if value and not _API_KEY.fullmatch(value):
        raise ValueError("expected the encoded API key (base64 letters, digits, + / = - _)")
    return value


def _username(raw: str) -> str:
    if ":" in raw or any(c < " " or c == "\x7f" for c in raw):
        raise ValueError("expected a user name without ':' or control characters")
    return raw


def _index(raw: str) -> str:
    value = raw.strip()
    plain = re.sub(r"%[A-Za-z%]", "", value)
    if not value or plain != plain.lower() or any(c in plain for c in ' "*\\<|,>/?#:'):
        raise ValueError("expected a lowercase index or data stream name, optionally with %Y %m %d")
    return value


def _optional_index(raw: str) -> str:
    return _index(raw) if raw.strip() else ""


_NAME_PART = re.compile(r"[a-z0-9][a-z0-9_.]{0,99}")
_SCHEME_NAME = re.compile(rf"logs-({_NAME_PART.pattern})-({_NAME_PART.pattern})")
_TIME_VALUE = re.compile(r"[1-9][0-9]{0,8}(d|h|m|s|ms)")


def _name_part(raw: str) -> str:
    """A data stream dataset or namespace: Elastic's naming scheme forbids `-` in them."""
    value = raw.strip()
    if not _NAME_PART.fullmatch(value):
        raise ValueError("expected 1-100 of a-z 0-9 _ . (no '-'), starting with a letter or digit")
    return value


def _retention(raw: str) -> str:
    value = raw.strip()
    if value and not _TIME_VALUE.fullmatch(value):
        raise ValueError("expected an Elasticsearch time value such as 30d, 12h or empty")
    return value


def _policy(raw: str) -> str:
    value = raw.strip()
    if value and (value != value.lower() or any(c in value for c in ' "*\\<|,>/?#:')):
        raise ValueError("expected an ILM policy name (lowercase, no spaces or , / * ? # :)")
    return value


def _nonempty(parse: Callable[[str], tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    def check(raw: str) -> tuple[str, ...]:
        value = parse(raw)
        if not value:
            raise ValueError("expected at least one entry")
        return value

    return check


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    """Every logshipper setting; README.md's settings table mirrors this class."""

    paths: tuple[str, ...] = setting(
        "/var/log/app/*.log",
        "comma-separated globs of the log files to ship (** allowed)",
        _nonempty(listing(str)),
        metavar="GLOBS",
    )
    exclude: tuple[str, ...] = setting(
        "", "comma-separated globs of files never to ship", listing(str), metavar="GLOBS"
    )
    es_hosts: tuple[str, ...] = setting(
        "http://127.0.0.1:9200",
        "comma-separated Elasticsearch URLs (failover between them)",
        _nonempty(listing(_url)),
        metavar="URLS",
    )
    data_stream: bool = setting(
        "true",
        "write to a data stream (op_type create); false: plain indices",
        boolean,
        metavar="BOOL",
    )
    dataset: str = setting(
        "app",
        "event.dataset and data_stream.dataset of every document",
        _name_part,
        metavar="NAME",
    )
    namespace: str = setting(
        "default", "data_stream.namespace of every document", _name_part, metavar="NAME"
    )
    index: str = setting(
        "",
        "target index or data stream, a date pattern (from the record time) for plain indices "
        "(empty: logs-DATASET-NAMESPACE, or logshipper-DATASET-NAMESPACE-%Y.%m.%d for plain "
        "indices)",
        _optional_index,
        metavar="INDEX",
    )
    index_template: bool = setting(
        "true",
        "at start, create an index template for the target mapping ECS fields "
        "(an existing template of the same name is kept)",
        boolean,
        metavar="BOOL",
    )
    index_template_priority: int = setting(
        "600",
        "priority of that index template (above 500: wins over the built-in logs-*-*)",
        integer(0, 1_000_000),
        metavar="N",
    )
    index_replicas: int = setting(
        "0", "index.number_of_replicas in that index template", integer(0, 100), metavar="N"
    )
    ilm_policy: str = setting(
        "", "index.lifecycle.name in that index template (an ILM policy)", _policy, metavar="NAME"
    )
    data_retention: str = setting(
        "",
        "data stream lifecycle retention in that index template, e.g. 30d (data streams, "
        "Elasticsearch 8.11+)",
        _retention,
        metavar="DURATION",
    )
    state_dir: str = setting(
        "/var/lib/logshipper", "directory for checkpoints and the dead-letter file", metavar="DIR"
    )
    read_from: str = setting(
        "beginning",
        "where to start files found at first start without a checkpoint",
        choice("beginning", "end"),
        metavar="WHERE",
    )
    es_username: str = setting("", "basic auth user", _username, metavar="USER")
    es_password: str = setting("", "basic auth password", secret=True, metavar="PASSWORD")
    es_api_key: str = setting("", "API key (base64 id:key)", _api_key, secret=True, metavar="KEY")
    es_ca_file: str = setting(
        "", "CA bundle to verify the server with", metavar="FILE", check=readable_file
    )
    es_client_cert: str = setting(
        "", "client certificate (PEM) for mutual TLS", metavar="FILE", check=readable_file
    )
    es_client_key: str = setting(
        "", "client certificate's key (PEM)", metavar="FILE", check=readable_file
    )
    es_verify_certs: bool = setting(
        "true", "verify the server certificate and name", boolean, metavar="BOOL"
    )
    es_gzip: bool = setting("false", "gzip the bulk request bodies", boolean, metavar="BOOL")
    es_timeout: float = setting(
        "30s", "timeout of one bulk request", duration(0.1, 600.0), metavar="DURATION"
    )
    es_dead_backoff_max: float = setting(
        "2s",
        "longest wait between probes of a node that could not be reached or timed out; "
        "delivery resumes within about this long after it answers again",
        duration(0.1, 600.0),
        metavar="DURATION",
    )
    batch_max_bytes: int = setting(
        "1MiB", "largest bulk request body", size(1024, 100 << 20), metavar="SIZE"
    )
    batch_max_docs: int = setting(
        "5000", "most documents in one bulk request", integer(1, 100_000), metavar="N"
    )
    flush_interval: float = setting(
        "1s", "send a partly filled bulk request after this long", duration(0.01, 60.0)
    )
    max_in_flight: int = setting(
        "2", "bulk requests sent concurrently", integer(1, 16), metavar="N"
    )
    queue_max_bytes: int = setting(
        "4MiB",
        "memory bound for documents read but not yet acknowledged; reading pauses above it",
        size(64 << 10, 1 << 30),
        metavar="SIZE",
    )
    max_line_size: int = setting(
        "256KiB", "longer lines are cut to this size and tagged", size(64, 64 << 20), metavar="SIZE"
    )
    partial_flush: float = setting(
        "5s", "ship a last line without newline after it stayed unchanged this long", duration(0.1)
    )
    multiline_pattern: str = setting(
        "",
        "regex matching the first line of a record; other lines join the previous one",
        _regex,
        metavar="REGEX",
    )
    multiline_max_lines: int = setting(
        "500", "most lines joined into one record", integer(2, 100_000), metavar="N"
    )
    multiline_timeout: float = setting(
        "2s", "ship a multiline record when no line followed for this long", duration(0.01)
    )
    json: bool = setting(
        "false", "parse lines that are JSON objects into fields", boolean, metavar="BOOL"
    )
    json_target: str = setting(
        "", "field to put parsed JSON under (empty: the document root)", metavar="FIELD"
    )
    timestamp_field: str = setting(
        "", "JSON field holding the record time (ISO-8601 or epoch seconds)", metavar="FIELD"
    )
    timestamp_regex: str = setting(
        "",
        "regex whose first group is an ISO-8601 time in plain lines",
        _regex,
        metavar="REGEX",
    )
    rescan_interval: float = setting(
        "10s", "how often the globs are re-evaluated (file events come in between)", duration(0.05)
    )
    poll_interval: float = setting(
        "1s", "how often open files are checked for growth when no event came", duration(0.01)
    )
    follow_symlinks: str = setting(
        "inside",
        "symlinks among the matches: inside (followed when the resolved target stays under "
        "the globs' directories), any, never",
        choice("inside", "any", "never"),
        metavar="POLICY",
    )
    max_files: int = setting(
        "10000",
        "most files followed at once; further matches wait (logshipper_files_waiting)",
        integer(1, 10_000_000),
        metavar="N",
    )
    rotate_wait: float = setting(
        "5s", "keep reading a rotated or deleted file until it stayed idle this long", duration(0.0)
    )
    max_open_files: int = setting(
        "128", "most files held open at once; idle files are closed first", integer(4, 65536)
    )
    checkpoint_interval: float = setting(
        "1s", "how often acknowledged offsets are written to disk", duration(0.01, 600.0)
    )
    retry_max_backoff: float = setting(
        "30s", "longest wait between retries of a failing bulk request", duration(0.01, 3600.0)
    )
    dead_letter_max_size: int = setting(
        "100MiB", "the dead-letter file is rotated to .1 above this size", size(4096)
    )
    dead_letter_index: str = setting(
        "",
        "also copy dead letters (reason, error, original document) to this index or data stream",
        _optional_index,
        metavar="INDEX",
    )
    pod_name: str = setting("", "pod name field (default: $POD_NAME)", metavar="NAME")
    pod_namespace: str = setting("", "namespace field (default: $POD_NAMESPACE)", metavar="NAME")
    node_name: str = setting("", "node name field (default: $NODE_NAME)", metavar="NAME")
    container_name: str = setting(
        "", "container name field (default: $CONTAINER_NAME)", metavar="NAME"
    )
    pod_uid: str = setting("", "pod uid field (default: $POD_UID)", metavar="UID")
    pod_labels_file: str = setting(
        "",
        'downward API file of the pod\'s labels (key="value" lines) for kubernetes.labels.*',
        metavar="FILE",
        check=readable_file,
    )

    @property
    def target(self) -> str:
        """The index or data stream written to: INDEX, else named from dataset and namespace."""
        if self.index:
            return self.index
        if self.data_stream:
            return f"logs-{self.dataset}-{self.namespace}"
        return f"logshipper-{self.dataset}-{self.namespace}-%Y.%m.%d"

    @property
    def stream_parts(self) -> tuple[str, str]:
        """(dataset, namespace) of the documents: those of a data stream named by Elastic's
        scheme in INDEX (`logs-nginx-prod`), so the fields match the stream, else the
        settings'."""
        if self.data_stream and self.index:
            match = _SCHEME_NAME.fullmatch(self.index)
            if match:
                return match.group(1), match.group(2)
        return self.dataset, self.namespace

    def check(self) -> None:
        """Cross-field rules; raises ConfigError naming every problem."""
        problems = []
        if self.es_password and not self.es_username:
            problems.append(
                "LOGSHIPPER_ES_PASSWORD='(hidden)': expected LOGSHIPPER_ES_USERNAME too"
            )
        if self.es_api_key and self.es_username:
            problems.append(
                f"LOGSHIPPER_ES_API_KEY='(hidden)': expected either it or "
                f"LOGSHIPPER_ES_USERNAME={self.es_username!r}, not both"
            )
        if bool(self.es_client_cert) != bool(self.es_client_key):
            problems.append(
                f"LOGSHIPPER_ES_CLIENT_CERT={self.es_client_cert!r}: expected it together with "
                f"LOGSHIPPER_ES_CLIENT_KEY={self.es_client_key!r}"
            )
        if self.batch_max_bytes > self.queue_max_bytes:
            problems.append(
                f"LOGSHIPPER_BATCH_MAX_BYTES={self.batch_max_bytes}: expected at most "
                f"LOGSHIPPER_QUEUE_MAX_BYTES={self.queue_max_bytes}"
            )
        if "%" in self.index and self.data_stream:
            problems.append(
                f"LOGSHIPPER_INDEX={self.index!r}: expected a plain data stream name "
                "(no date pattern) with LOGSHIPPER_DATA_STREAM=true (the default)"
            )
        if self.data_retention and not self.data_stream:
            problems.append(
                f"LOGSHIPPER_DATA_RETENTION={self.data_retention!r}: expected "
                "LOGSHIPPER_DATA_STREAM=true (a data stream lifecycle)"
            )
        if "%" in self.dead_letter_index or (
            self.dead_letter_index and self.dead_letter_index == self.target
        ):
            problems.append(
                f"LOGSHIPPER_DEAD_LETTER_INDEX={self.dead_letter_index!r}: expected a plain "
                "index name (no date pattern) other than LOGSHIPPER_INDEX"
            )
        if problems:
            raise ConfigError(problems)
