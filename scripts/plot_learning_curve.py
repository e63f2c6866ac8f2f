"""Draw a `t2s train rl` learning curve from its TensorBoard logs.

    python -m think2seg.scripts.plot_learning_curve runs/rl [--out FILE.png] \
        [--label "PPO, box"] [--baseline "center-box:0.5 (bench)=4.0"] [--final "rl (bench, grabcut)=9.1"]

Plots ``val/giou`` against environment steps for each run folder given (its ``tb/``), the
heuristic baselines that the run logged under ``baseline/*`` (scored by the same evaluator
as the curve) as horizontal lines, plus any ``--baseline NAME=VALUE`` lines and ``--final
NAME=VALUE`` points (e.g. the trained policy's `t2s bench` figures) at the last step.

The figure goes to ``--out``, by default ``learning_curve.png`` in the first run folder, so
that plotting never replaces a file of the checkout; the committed ``docs/learning_curve.png``
is regenerated only when named: ``--out docs/learning_curve.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from t2s_env.errors import ConfigError


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from ``run_dir/tb`` (or ``run_dir`` itself)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run_dir / "tb" if (run_dir / "tb").is_dir() else run_dir
    if not tb.is_dir() or not any(tb.glob("events.out.tfevents.*")):
        raise ConfigError(f"{run_dir} holds no TensorBoard events (expected {tb}/events.out.tfevents.*)")
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    for tag in acc.Tags()["scalars"]:
        by_step = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run rewrites steps: keep the last
        out[tag] = sorted(by_step.items())
    return out


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, float]]:
    out = []
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            out.append((name, float(value)))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError(f"{flag} {item!r}: expected NAME=NUMBER, e.g. {flag} 'center-box:0.5=4.0'")
    return out


def plot(runs: Sequence[Path], out: Path, labels: Sequence[str] = (), baselines: Sequence[tuple[str, float]] = (),
         finals: Sequence[tuple[str, float]] = (), title: str | None = None, show_train: bool = True) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 4.8), dpi=110)
    logged: dict[str, float] = {}
    last_step = 0
    for k, run in enumerate(runs):
        scalars = read_scalars(run)
        if "val/giou" not in scalars:
            raise ConfigError(f"{run} has no val/giou scalars; is it a `t2s train rl` output folder?")
        steps, values = zip(*scalars["val/giou"])
        label = labels[k] if k < len(labels) else run.name
        line, = ax.plot(steps, values, marker="o", markersize=3, linewidth=1.8, label=f"{label}: val gIoU")
        if show_train and "train/iou" in scalars:  # the same measure on the images it trains on
            t_steps, t_values = zip(*scalars["train/iou"])
            ax.plot(t_steps, [100 * v for v in t_values], linestyle=":", linewidth=1.2, color=line.get_color(),
                    label=f"{label}: train mean IoU ×100 (sampled actions)")
        last_step = max(last_step, steps[-1])
        for tag, points in scalars.items():
            if tag.startswith("baseline/"):
                logged.setdefault(tag.split("/", 1)[1], points[-1][1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = sorted(logged.items(), key=lambda kv: -kv[1]) + list(baselines)
    for j, (name, value) in enumerate(lines):
        ax.axhline(value, linestyle="--", linewidth=1, color=colors[(j + 2) % len(colors)], label=f"{name}: {value:.2f}")
    for j, (name, value) in enumerate(finals):
        ax.plot([last_step], [value], marker="*", markersize=12, linestyle="none",
                color=colors[(j + 5) % len(colors)], label=f"{name}: {value:.2f}")
    ax.set_xlabel("environment steps (scored actions)")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title or "PPO (tianshou) box policy on Think2Seg synthetic")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), framealpha=0.9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


def default_out(runs: Sequence[Path]) -> Path:
    """Where the figure goes without ``--out``: beside the first run's logs, never a tracked doc."""
    return runs[0] / "learning_curve.png"


def main(argv: Sequence[str] | None = None) -> int:
    """Plot val gIoU against env steps of `t2s train rl` runs, baselines as lines."""
    p = argparse.ArgumentParser(prog="plot_learning_curve", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="output_dir of t2s train rl (holds tb/)")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG to write (default: RUN/learning_curve.png of the first run)")
    p.add_argument("--label", action="append", default=[], help="legend label per run")
    p.add_argument("--baseline", action="append", default=[], help="NAME=VALUE horizontal line")
    p.add_argument("--final", action="append", default=[], help="NAME=VALUE point at the last step")
    p.add_argument("--title")
    p.add_argument("--no-train", action="store_true", help="leave out the train IoU curve")
    args = p.parse_args(argv)
    out = args.out if args.out is not None else default_out(args.runs)
    try:
        path = plot(args.runs, out, args.label, _pairs(args.baseline, "--baseline"), _pairs(args.final, "--final"),
                    args.title, show_train=not args.no_train)
    except ConfigError as exc:
        print(f"plot_learning_curve: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
