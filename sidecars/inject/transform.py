"""Inject into every workload of a YAML stream; the first problem stops it all."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.inject.containers import build
from sidecars.inject.errors import InjectError
from sidecars.inject.pod import inject
from sidecars.inject.request import Flags, requested
from sidecars.inject.workloads import Workload, workloads
from sidecars.inject.yamlio import dump_all, load_all


@dataclass(frozen=True)
class Options:
    flags: Flags
    registry: str
    tag: str
    native: bool  # native sidecars (Kubernetes >= 1.29) or classic containers


def _app_name(workload: Workload) -> str:
    first = workload.template["spec"]["containers"][0]
    name = first.get("name") if isinstance(first, dict) else None
    return name if isinstance(name, str) else ""


def inject_workload(workload: Workload, options: Options) -> bool:
    """Add what the workload asks for; False: it asks for nothing and is left as it is."""
    workload.check()
    requests = requested(workload.annotations(), options.flags)
    if not requests:
        return False
    spec = workload.template["spec"]
    if not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise InjectError("the pod has no containers")
    built = [
        build(
            r,
            f"{options.registry}/{r.sidecar.name}:{options.tag}",
            options.native,
            _app_name(workload),
        )
        for r in requests
    ]
    if not options.native and workload.kind in ("Job", "CronJob"):
        long_running = [str(b.container["name"]) for b in built if b.long_running]
        if long_running:
            raise InjectError(
                f"{', '.join(long_running)} as classic containers would keep the Job from "
                "completing: inject native sidecars (Kubernetes >= 1.29)"
            )
    inject(spec, workload.template_annotations(), built)
    return True


def inject_text(text: str, options: Options) -> str:
    """`text` with the sidecars added; the text itself when no workload asks for any."""
    docs = load_all(text)
    changed = False
    for number, doc in enumerate(docs, 1):
        try:
            for workload in workloads(doc):
                try:
                    changed |= inject_workload(workload, options)
                except InjectError as e:
                    raise InjectError(f"{workload.label}: {e}") from None
        except InjectError as e:
            raise InjectError(f"document {number}, {e}") from None
    if not changed:
        return text  # byte for byte, empty documents and all
    # an empty document would come back as `null`, which kubectl refuses
    return dump_all([doc for doc in docs if doc is not None])
