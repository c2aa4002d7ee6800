"""Layers of local images: their uncompressed sizes and the bytes images share.

Read from the engine's layer store (root only). docker/images prints its summary with
`python -m support.images PREFIX VERSION NAME...`; the image tests and bench/images.py use
`layer_sizes` and `shared_bytes`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def _docker(*args: str) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _exists(ref: str) -> bool:
    inspect = ["docker", "image", "inspect", ref]
    return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


def layer_sizes(image: str) -> list[tuple[str, int]]:
    """(diff id, uncompressed size) of every layer of a local image, base first.

    The chain id of layer n, the layer store's key, is sha256("<chain id n-1> <diff id n>").
    """
    info = json.loads(_docker("info", "--format", "{{json .}}"))
    store = Path(info["DockerRootDir"]) / "image" / info["Driver"] / "layerdb" / "sha256"
    layers = json.loads(_docker("image", "inspect", image))[0]["RootFS"]["Layers"]
    sizes, chain = [], ""
    for diff in layers:
        chain = (
            diff
            if not chain
            else "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
        )
        size = int((store / chain.removeprefix("sha256:") / "size").read_text())
        sizes.append((diff, size))
    return sizes


def shared_bytes(layers: Mapping[str, Sequence[tuple[str, int]]], name: str) -> int:
    """The bytes of `name`'s layers that at least one of the other images has too."""
    others = {diff for other, sizes in layers.items() if other != name for diff, _ in sizes}
    return sum(size for diff, size in layers[name] if diff in others)


def main(argv: Sequence[str]) -> int:
    """One line per image PREFIX/NAME:VERSION there is: its size and the bytes the others
    share."""
    prefix, version, *names = argv
    refs = {name: f"{prefix}/{name}:{version}" for name in names}
    refs = {name: ref for name, ref in refs.items() if _exists(ref)}  # a first build of one
    layers = {name: layer_sizes(ref) for name, ref in refs.items()}
    for name, ref in refs.items():
        size = json.loads(_docker("image", "inspect", ref))[0]["Size"]
        shared = shared_bytes(layers, name)
        print(f"{ref} {size / 1e6:.1f} MB, shared with the others: {shared / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
