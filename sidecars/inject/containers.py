"""The container and volumes one sidecar adds to a pod, modelled on examples/pods."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from sidecars.inject.catalog import (
    IMAGE_USER,
    PODINFO_VOLUME,
    RULES_VOLUME,
    STATE_VOLUME,
    Sidecar,
)
from sidecars.inject.errors import InjectError
from sidecars.inject.request import Request
from sidecars.runtime.settings import boolean, env_name, host_port

LOGS_MOUNT = "/var/log/app"  # the logshipper's default paths are /var/log/app/*.log
RULES_MOUNT = "/etc/adapter"
PODINFO_MOUNT = "/etc/podinfo"  # the pod's labels: the downward API has no env form for them
_PLAIN = re.compile(r"[A-Za-z0-9/_.][A-Za-z0-9/_.:@%+=*~-]*")
DOWNWARD = (
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("POD_UID", "metadata.uid"),
    ("NODE_NAME", "spec.nodeName"),
)


@dataclass
class Port:
    number: int
    name: str | None  # None: listened on, not exposed (the ambassador's loopback listener)


@dataclass
class Built:
    container: CommentedMap
    volumes: list[CommentedMap] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    uses_volumes: list[str] = field(default_factory=list)  # pod volumes it mounts
    init: bool = False  # goes into initContainers (a native sidecar or the loader)
    long_running: bool = True  # False: an init container that exits


def text(value: str) -> str:
    """A value as it is written: plain when surely safe, else double-quoted (ruamel.yaml writes
    some plain scalars, such as `?x` inside a flow mapping, that it cannot read back)."""
    if _PLAIN.fullmatch(value) and not value.endswith(":"):
        return value  # ruamel.yaml still quotes what would read as another type ("true", "1")
    quoted: str = DoubleQuotedScalarString(value)
    return quoted


def flow(**items: Any) -> CommentedMap:
    """A small mapping written on one line, as the examples write env entries and mounts."""
    m = CommentedMap({k: text(v) if isinstance(v, str) else v for k, v in items.items()})
    m.fa.set_flow_style()
    return m


def _port(request: Request, setting: str, default: int) -> int:
    raw = request.settings.get(setting)
    if raw is None:
        return default
    try:
        return host_port("0.0.0.0")(raw)[1]
    except ValueError as e:
        key = f"{request.sidecar.name}-{setting.replace('_', '-')}"
        raise InjectError(f"{key} {raw!r}: {e}") from None


def _flag(request: Request, setting: str) -> bool:
    raw = request.settings.get(setting, "false")
    try:
        return boolean(raw)
    except ValueError:
        key = f"{request.sidecar.name}-{setting.replace('_', '-')}"
        raise InjectError(f"{key} {raw!r}: expected true or false") from None


def _required(request: Request, option: str) -> str:
    value = request.options.get(option, "").strip()
    if not value:
        name = request.sidecar.name
        raise InjectError(
            f"{name} needs {request.sidecar.options[option]}: annotation "
            f"sidecars.example.com/{name}-{option} or --set {name}-{option}=NAME"
        )
    return value


def _security_context() -> CommentedMap:
    drop = CommentedSeq(["ALL"])
    drop.fa.set_flow_style()
    return CommentedMap(
        runAsNonRoot=True,
        runAsUser=IMAGE_USER,
        runAsGroup=IMAGE_USER,
        readOnlyRootFilesystem=True,
        allowPrivilegeEscalation=False,
        capabilities=flow(drop=drop),
        seccompProfile=flow(type="RuntimeDefault"),
    )


def _probe(path: str, port: str, **more: int) -> CommentedMap:
    return CommentedMap(httpGet=flow(path=path, port=port), **more)


def build(request: Request, image: str, native: bool, app: str) -> Built:
    """The sidecar's container (with its env, mounts, ports, probes, hardening, resources)."""
    sidecar: Sidecar = request.sidecar
    prefix = sidecar.name.upper()
    c = CommentedMap(name=sidecar.name, image=text(image))
    long_running = sidecar.long_running or _flag(request, "watch")  # the loader's watch mode
    if native and long_running:
        c["restartPolicy"] = "Always"  # a native sidecar: up before the app, down after it
    built = Built(c, init=native or not long_running, long_running=long_running)
    env = CommentedSeq()
    mounts = CommentedSeq()
    settings = dict(request.settings)

    if sidecar.name == "logshipper":
        logs = _required(request, "logs-volume")
        built.uses_volumes.append(logs)
        state = settings.get("state_dir", "/var/lib/logshipper")
        mounts.append(flow(name=logs, mountPath=LOGS_MOUNT, readOnly=True))
        mounts.append(flow(name=STATE_VOLUME, mountPath=state))
        mounts.append(flow(name=PODINFO_VOLUME, mountPath=PODINFO_MOUNT, readOnly=True))
        built.volumes.append(flow(name=STATE_VOLUME, emptyDir=flow()))
        labels = flow(path="labels", fieldRef=flow(fieldPath="metadata.labels"))
        built.volumes.append(
            CommentedMap(
                name=PODINFO_VOLUME, downwardAPI=CommentedMap(items=CommentedSeq([labels]))
            )
        )
        settings.setdefault("state_dir", state)
        settings.setdefault("pod_labels_file", f"{PODINFO_MOUNT}/labels")
    elif sidecar.name == "warloader":
        volume = _required(request, "volume")
        built.uses_volumes.append(volume)
        mounts.append(flow(name=volume, mountPath=settings.setdefault("dest", "/target")))
        if not settings.get("sources", "").strip():
            raise InjectError(
                "warloader needs its sources: annotation sidecars.example.com/warloader-sources "
                "or --set warloader-sources=URL#sha256=..."
            )
    elif sidecar.name == "adapter" and "rules-configmap" in request.options:
        configmap = _required(request, "rules-configmap")
        mounts.append(flow(name=RULES_VOLUME, mountPath=RULES_MOUNT, readOnly=True))
        built.volumes.append(flow(name=RULES_VOLUME, configMap=flow(name=configmap)))
        settings.setdefault("rules", f"{RULES_MOUNT}/rules.yaml")

    for name in sidecar.settings:  # the sidecar's own order, whatever order they came in
        if name in settings:
            env.append(flow(name=env_name(prefix, name), value=settings[name]))
        elif name in request.secrets:
            secret, key = request.secrets[name]
            ref = flow(secretKeyRef=flow(name=secret, key=key))
            env.append(CommentedMap(name=env_name(prefix, name), valueFrom=ref))
    for var, path in DOWNWARD:
        env.append(CommentedMap(name=var, valueFrom=flow(fieldRef=flow(fieldPath=path))))
    if sidecar.name == "logshipper":
        env.append(flow(name="CONTAINER_NAME", value=app))
    c["env"] = env

    admin = _port(request, "admin_addr", sidecar.admin_port)
    ports = CommentedSeq()
    if long_running:
        ports.append(flow(name=sidecar.admin_port_name, containerPort=admin))
        built.ports.append(Port(admin, sidecar.admin_port_name))
    if sidecar.listen_port is not None:
        listen = _port(request, "listen", sidecar.listen_port)
        if sidecar.name == "adapter":  # answers the monitoring system: exposed
            ports.append(flow(name="adapter-health", containerPort=listen))
            built.ports.append(Port(listen, "adapter-health"))
        else:  # the ambassador's listener is the app's, on loopback: only claimed
            built.ports.append(Port(listen, None))
    if ports:
        c["ports"] = ports
    if mounts:
        c["volumeMounts"] = mounts
    if long_running:
        if native and not sidecar.long_running:
            # the watching loader: the app starts once every source is in place (10 minutes)
            c["startupProbe"] = _probe(
                "/readyz", sidecar.admin_port_name, periodSeconds=2, failureThreshold=300
            )
        elif native:  # the app starts once this passes
            c["startupProbe"] = _probe(
                "/healthz", sidecar.admin_port_name, periodSeconds=1, failureThreshold=30
            )
        c["livenessProbe"] = _probe("/healthz", sidecar.admin_port_name)
        c["readinessProbe"] = _probe("/readyz", sidecar.admin_port_name)
    c["securityContext"] = _security_context()
    c["resources"] = CommentedMap(
        requests=flow(cpu=sidecar.requests[0], memory=sidecar.requests[1]),
        limits=flow(cpu=sidecar.limits[0], memory=sidecar.limits[1]),
    )
    return built
