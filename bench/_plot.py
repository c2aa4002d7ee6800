"""The history of the benchmarks' ratios as one PNG: a panel per bench, a line per ratio, one
point per run in date order (labelled with its date and commit), on a log scale around 1 (the
anchor's figure; for bench/images.py the goal); a bench with no ratio at all (instructions)
gets the history of its figures instead. Run it as
bench/plot [--dir build/bench] [--out build/bench/ratios.png] [--bench NAME ...]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import results_dir  # noqa: E402


def load_runs(folder: Path, only: set[str]) -> dict[str, list[dict[str, Any]]]:
    """{bench: its runs in date order} from the JSON files in `folder`; a file that is not a
    run record is named on stderr and skipped."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            bench, ratios = doc["bench"], doc["ratios"]
            if not (isinstance(bench, str) and isinstance(doc["date"], str)):
                raise TypeError("bench or date not a string")
            if not isinstance(ratios, dict):
                raise TypeError("ratios not an object")
            for name, ratio in ratios.items():
                if not number(ratio.get("value") if isinstance(ratio, dict) else None):
                    raise TypeError(f"ratio {name!r} has no numeric value")
            figures = doc.setdefault("figures", {})
            if not isinstance(figures, dict) or not all(map(number, figures.values())):
                raise TypeError("figures not an object of numbers")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"plot: {path}: not a bench record ({exc}), skipped", file=sys.stderr)
            continue
        if (ratios or figures) and (not only or bench in only):
            runs.setdefault(bench, []).append(doc)
    for docs in runs.values():
        docs.sort(key=lambda d: str(d["date"]))
    return runs


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def label(doc: dict[str, Any]) -> str:
    commit = (doc.get("commit") or "?")[:7] + ("+" if doc.get("dirty") else "")
    return f"{str(doc['date'])[5:16].replace('T', ' ')}\n{commit}"


def ratio_panel(ax: Any, bench: str, docs: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    names = list(dict.fromkeys(n for d in docs for n in d["ratios"]))
    for n, name in enumerate(names):
        # a ratio of 0 (ours grew no memory at all) has no place on a log scale
        xs = [i for i, d in enumerate(docs) if d["ratios"].get(name, {}).get("value", 0) > 0]
        if not xs:
            continue
        ys = [docs[i]["ratios"][name]["value"] for i in xs]
        better = docs[xs[-1]]["ratios"][name].get("better", "higher")
        arrow = "\u2191" if better == "higher" else "\u2193"
        style = ("-", "--", ":", "-.")[n // 10 % 4]  # the colours repeat after ten
        ax.plot(xs, ys, style, marker="o", markersize=4, label=f"{name} ({arrow} better)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    one = "the goal" if bench == "images" else "the anchor's figure"  # images has no anchor
    ax.set_title(f"{bench}: ratios (1 = {one}), {len(docs)} run(s)", loc="left")


def figure_panel(ax: Any, bench: str, docs: list[dict[str, Any]]) -> None:
    """A bench with no anchor (instructions): the history of its own figures, from 0."""
    names = list(dict.fromkeys(n for d in docs for n in d["figures"]))
    for n, name in enumerate(names):
        xs = [i for i, d in enumerate(docs) if name in d["figures"]]
        ys = [docs[i]["figures"][name] for i in xs]
        style = ("-", "--", ":", "-.")[n // 10 % 4]
        ax.plot(xs, ys, style, marker="o", markersize=4, label=name)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{bench}: figures (no anchor), {len(docs)} run(s)", loc="left")


def plot(runs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(runs), 1, figsize=(13, 3.6 * len(runs)), squeeze=False, layout="constrained"
    )
    for ax, (bench, docs) in zip(axes[:, 0], sorted(runs.items()), strict=True):
        if any(d["ratios"] for d in docs):
            ratio_panel(ax, bench, docs)
        else:
            figure_panel(ax, bench, docs)
        ax.set_xticks(range(len(docs)), [label(d) for d in docs], fontsize=7)
        ax.set_xlim(-0.5, max(len(docs) - 0.5, 0.5))
        ax.grid(True, which="both", axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="the run records (build/bench)")
    parser.add_argument("--out", type=Path, default=None, help="the PNG (<dir>/ratios.png)")
    parser.add_argument("--bench", action="append", default=[], help="only this bench")
    args = parser.parse_args()
    folder = args.dir or results_dir()
    runs = load_runs(folder, set(args.bench))
    if not runs:
        print(
            f"plot: no bench records in {folder} (bench/run writes them)",
            file=sys.stderr,
        )
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot: matplotlib is not installed (scripts/setup installs it)", file=sys.stderr)
        return 1
    out = args.out or folder / "ratios.png"
    plot(runs, out)
    total = sum(len(d) for d in runs.values())
    print(f"plot: {out}: {total} run(s) of {', '.join(sorted(runs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
