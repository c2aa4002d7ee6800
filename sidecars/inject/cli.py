"""`sidecars inject [FILE]`: read Kubernetes YAML (a file or stdin), write it with sidecars in."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from sidecars import __version__
from sidecars.inject.catalog import DEFAULT_REGISTRY, SIDECARS
from sidecars.inject.errors import InjectError
from sidecars.inject.request import Flags, parse_add, parse_set
from sidecars.runtime.flags import OneLineParser
from sidecars.runtime.settings import EXIT_CONFIG

MAX_INPUT = 32 * 1024 * 1024
NATIVE_SINCE = (1, 29)  # native sidecars: init containers with restartPolicy: Always

SUMMARY = """\
Add the sidecars to Kubernetes workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob, in multi-document files and Lists), keeping comments and key order. What to add
comes from --add/--set or from the workload's annotations (sidecars.example.com/<sidecar>: "true",
sidecars.example.com/<sidecar>-<setting>: value); flags win. Another run changes nothing.
A name or port that collides is one error line, exit 2, and nothing is written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="YAML to read (default: stdin)")
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="NAMES",
        help=f"add these sidecars to every workload (comma-separated: {', '.join(SIDECARS)})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting or option for every workload, e.g. logshipper-es-hosts=http://es:9200 "
        "(as the annotation sidecars.example.com/KEY)",
    )
    parser.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        help=f"where the images are pulled from (default {DEFAULT_REGISTRY})",
    )
    parser.add_argument("--tag", default=__version__, help=f"image tag (default {__version__})")
    parser.add_argument(
        "--kubernetes-version",
        default="1.29",
        metavar="X.Y",
        help="the cluster's version: from 1.29 the sidecars are native sidecars (init "
        "containers with restartPolicy: Always), before it classic containers (default 1.29)",
    )


def _native(version: str) -> bool:
    m = re.fullmatch(r"v?(\d{1,3})\.(\d{1,3})(?:\.\d{1,5})?", version.strip())
    if not m:
        raise InjectError(f"--kubernetes-version {version!r}: expected X.Y such as 1.29")
    return (int(m.group(1)), int(m.group(2))) >= NATIVE_SINCE


def _read(path: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_INPUT + 1)
    except OSError as e:
        raise InjectError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_INPUT:
        raise InjectError(f"{path}: larger than {MAX_INPUT // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InjectError(f"{path}: not UTF-8 (byte {e.start})") from None


def run(args: argparse.Namespace) -> int:
    try:
        from sidecars.inject.transform import Options, inject_text
    except ModuleNotFoundError as e:  # the images leave the `inject` extra out
        sys.stderr.write(
            f"sidecars inject: needs ruamel.yaml ({e.name}): pip install 'sidecars[inject]'\n"
        )
        return EXIT_CONFIG
    try:
        options = Options(
            Flags(parse_add(args.add), parse_set(args.set)),
            args.registry.rstrip("/"),
            args.tag,
            _native(args.kubernetes_version),
        )
        out = inject_text(_read(args.file), options)
    except InjectError as e:
        sys.stderr.write(f"sidecars inject: {e}\n")
        return EXIT_CONFIG
    sys.stdout.write(out)
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """The `sidecars` console script: `sidecars inject ...`."""
    parser = OneLineParser(prog="sidecars", description="Tools for the sidecar images.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inject = sub.add_parser(
        "inject",
        help="add the sidecars to Kubernetes YAML",
        description=SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(inject)
    raise SystemExit(run(parser.parse_args(argv)))


def inject_main(argv: Sequence[str] | None = None) -> None:
    """`python -m sidecars.inject ...`: the same as `sidecars inject ...`."""
    parser = OneLineParser(
        prog="sidecars inject",
        description=SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args(argv)))
