"""Add the built sidecars to one pod spec: drop what an earlier run added, check for
collisions with what the pod already has, then insert (so a second run changes nothing)."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from sidecars.inject.catalog import INJECTED, OWN_VOLUMES, SIDECARS
from sidecars.inject.containers import Built
from sidecars.inject.errors import InjectError


def _seq(spec: MutableMapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InjectError(f"spec.{key} is not a list")
    for item in value:
        if not isinstance(item, dict):
            raise InjectError(f"spec.{key} holds an entry that is not a mapping")
    return value


def _name(item: MutableMapping[str, Any]) -> str | None:
    """An entry's name; one that is no string (a list, a mapping) names nothing."""
    name = item.get("name")
    return name if isinstance(name, str) else None


def _previous(annotations: MutableMapping[str, Any]) -> set[str]:
    value = annotations.get(INJECTED)
    if value is not None and not isinstance(value, str):
        raise InjectError(f"annotation {INJECTED!r}: expected a string")
    # only sidecar names: a planted `injected: app` must never remove the app's container
    return {n.strip() for n in (value or "").split(",")} & set(SIDECARS)


def _drop_previous(spec: MutableMapping[str, Any], previous: set[str]) -> None:
    for key in ("initContainers", "containers"):
        items = _seq(spec, key)
        for i in reversed(range(len(items))):
            if _name(items[i]) in previous:
                del items[i]
    owned = {v for name in previous for v in OWN_VOLUMES.get(name, ())}
    volumes = _seq(spec, "volumes")
    for i in reversed(range(len(volumes))):
        if _name(volumes[i]) in owned:
            del volumes[i]


def _check(spec: MutableMapping[str, Any], built: Sequence[Built]) -> None:
    taken_names: dict[str, str] = {}
    taken_ports: dict[int, str] = {}
    taken_port_names: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for c in _seq(spec, key):
            name = _name(c)
            if name is not None:
                taken_names[name] = f"{key[:-1]} {name!r}"
            ports = c.get("ports")
            for port in ports if isinstance(ports, list) else []:
                if isinstance(port, dict):
                    where = f"container {name!r}"
                    if isinstance(port.get("containerPort"), int):
                        taken_ports[port["containerPort"]] = where
                    port_name = _name(port)
                    if port_name:
                        taken_port_names[port_name] = where
    volumes = {_name(v) for v in _seq(spec, "volumes")}
    for b in built:
        ours = str(b.container["name"])
        if ours in taken_names:
            raise InjectError(f"container name {ours!r} is taken ({taken_names[ours]})")
        for port in b.ports:
            if port.number in taken_ports:
                raise InjectError(
                    f"port {port.number} of {ours} collides with {taken_ports[port.number]}"
                )
            if port.name is not None and port.name in taken_port_names:
                raise InjectError(
                    f"port name {port.name!r} of {ours} collides with {taken_port_names[port.name]}"
                )
        for volume in b.volumes:
            if volume["name"] in volumes:
                raise InjectError(f"volume name {volume['name']!r} of {ours} is already taken")
        for needed in b.uses_volumes:
            if needed not in volumes:
                raise InjectError(f"{ours} mounts volume {needed!r}, which the pod does not have")
        # the next sidecar must not collide with this one either
        taken_names[ours] = f"sidecar {ours!r}"
        for port in b.ports:
            taken_ports[port.number] = f"sidecar {ours!r}"
            if port.name is not None:
                taken_port_names[port.name] = f"sidecar {ours!r}"
        volumes.update(str(v["name"]) for v in b.volumes)


def _ensure_seq(spec: MutableMapping[str, Any], key: str) -> list[Any]:
    if spec.get(key) is None:
        if key == "initContainers" and key not in spec and isinstance(spec, CommentedMap):
            # where people write it: just before the containers
            spec.insert(list(spec).index("containers"), key, CommentedSeq())
        else:
            spec[key] = CommentedSeq()
    seq: list[Any] = spec[key]
    if isinstance(seq, CommentedSeq):
        seq.fa.set_block_style()  # a flow-style list would put every added container on one line
    return seq


def inject(
    spec: MutableMapping[str, Any],
    annotations: MutableMapping[str, Any],
    built: Sequence[Built],
) -> None:
    """Add `built` (in their run order) to `spec`; record them in `annotations`."""
    if not isinstance(spec.get("containers"), list) or not spec["containers"]:
        raise InjectError("the pod has no containers")
    if isinstance(spec, CommentedMap):
        spec.fa.set_block_style()
    _drop_previous(spec, _previous(annotations))
    _check(spec, built)
    first = 0
    for b in built:
        if b.init:
            _ensure_seq(spec, "initContainers").insert(first, b.container)
            first += 1
        else:
            spec["containers"].append(b.container)
        for volume in b.volumes:
            _ensure_seq(spec, "volumes").append(volume)
    annotations[INJECTED] = ",".join(str(b.container["name"]) for b in built)
