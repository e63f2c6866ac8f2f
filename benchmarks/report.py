"""``t2s report``: one self-contained HTML page of the recorded runs.

    t2s report [--out results] [--html report.html] [--dataset synthetic:val] [--all] [--gallery 3]

The page holds, per dataset: the leaderboard with the 95 % bootstrap intervals of
metrics.json (when the run recorded them); Pr@X curves per agent; histograms of the
per-sample IoU; gIoU per category where the data has categories (the ``category`` of its
QA files, as the synthetic set writes); and per agent a gallery of its best and worst
samples, each with its overlay (prediction blue, GT yellow, boxes red, points green), the
question and the answer. The plots are drawn with matplotlib and every image is inlined as
base64, so the page is one file that opens anywhere, offline, with no script.

Runs are those the leaderboard shows (the latest full run per identity) or, with
``--all``, every recorded run. Gallery overlays re-segment the recorded answers with the
run's segmenter in the agent's frame; when the data or the segmenter is not available
here, the page says so instead of showing them.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from t2s_env import ConfigError, T2SError
from t2s_env.framing import load_scoring_frames
from t2s_env.render import draw_overlay

from .leaderboard import Entry, collect
from .results_store import ResultsStore
from .rundir import RunDir

#: thresholds of the Pr@X curves (metrics.json's Pr@0.5 … Pr@0.9 are drawn as markers)
CURVE_THRESHOLDS = np.round(np.arange(0.0, 1.0001, 0.025), 3)
TILE = 300
DEFAULT_GALLERY = 3


@dataclass
class RunData:
    """One run on the page: its leaderboard entry and its files."""

    entry: Entry
    config: dict
    metrics: dict
    records: list[dict]
    label: str = ""


@dataclass
class DatasetView:
    """What the page can read of one dataset: samples by id and categories by sample id."""

    samples: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    error: str | None = None


# -- reading ----------------------------------------------------------------------------

def load_runs(store: ResultsStore, datasets: Sequence[str] | None, all_runs: bool) -> tuple[list[RunData], list[Entry], list[str]]:
    """(runs with their files, reported rows, notes about runs whose files are missing)."""
    runs, reported, notes = [], [], []
    for e in collect(store, datasets, all_runs=all_runs):
        if e.source != "run":
            reported.append(e)
            continue
        rd = RunDir(store.run_dir(e.run_id))
        try:
            config, metrics = rd.read_config(), rd.read_metrics()
            records, _ = rd.read_records()
        except (OSError, ValueError, T2SError) as exc:
            notes.append(f"run {e.run_id}: its files cannot be read ({exc}); left out")
            continue
        runs.append(RunData(e, config, metrics, records))
    _label_runs(runs)
    return runs, reported, notes


def _label_runs(runs: list[RunData]) -> None:
    """The agent's name, with segmenter, protocol and finally run id added only where two
    runs of one dataset would otherwise share a label."""
    by_dataset: dict[str, list[RunData]] = {}
    for r in runs:
        by_dataset.setdefault(r.entry.dataset, []).append(r)
    for group in by_dataset.values():
        parts = [
            lambda r: r.entry.agent,
            lambda r: f"{r.entry.agent} · {r.entry.segmenter}",
            lambda r: f"{r.entry.agent} · {r.entry.segmenter} · {r.entry.protocol}",
            lambda r: f"{r.entry.agent} · {r.entry.segmenter} · {r.entry.protocol} · {r.entry.run_id[-6:]}",
        ]
        for make in parts:
            labels = [make(r) for r in group]
            if len(set(labels)) == len(labels) or make is parts[-1]:
                for r, label in zip(group, labels):
                    r.label = label
                break


def read_dataset(dataset: str, root: str | None, question: str) -> DatasetView:
    """Samples of a run's dataset by id, and each sample's category when its QA file (the
    EarthReason layout's ``<split>/QAs/<image_id>.json``) names one."""
    from t2s_env.datasets import make_dataset

    view = DatasetView()
    try:
        samples = make_dataset(dataset, root=root, question=question)
        view.samples = {s.sample_id: s for s in samples}
    except (T2SError, OSError, ValueError) as exc:
        view.error = f"{dataset} cannot be read here ({exc})"
        return view
    qa_cache: dict[Path, str | None] = {}
    for sid, s in view.samples.items():
        qa = Path(s.image_path).parent.parent / "QAs" / f"{s.image_id}.json"
        if qa not in qa_cache:
            try:
                data = json.loads(qa.read_text(encoding="utf-8"))
                cat = data.get("category") if isinstance(data, dict) else None
                qa_cache[qa] = cat if isinstance(cat, str) and cat else None
            except (OSError, ValueError):
                qa_cache[qa] = None
        if qa_cache[qa] is not None:
            view.categories[sid] = qa_cache[qa]
    return view


# -- numbers ----------------------------------------------------------------------------

def _protocol(run: RunData) -> dict:
    return run.metrics.get("protocol") or run.config.get("protocol") or {}


def _counted(rec: Mapping[str, Any], protocol: Mapping[str, Any]) -> bool:
    return not (protocol.get("empty_rule") == "skip" and rec.get("gt_empty"))


def _in_pr(rec: Mapping[str, Any], protocol: Mapping[str, Any]) -> bool:
    """Whether a sample is in the Pr@X denominator (t2s_env.metrics' rule)."""
    if not _counted(rec, protocol):
        return False
    denominator = protocol.get("pr_denominator", "all")
    ok = bool(rec.get("parsed_ok"))
    if denominator == "parsed":
        return ok
    if denominator == "predicted":
        return ok and (not rec.get("answer_empty") or bool(rec.get("gt_empty")))
    return True


def pr_curve(run: RunData, thresholds: Iterable[float] = CURVE_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Pr@X of a run's recorded per-sample IoU at each threshold (its protocol's comparator
    and denominator); NaN where nothing is in the denominator."""
    protocol = _protocol(run)
    iou = np.array([float(r.get("iou") or 0.0) for r in run.records if _in_pr(r, protocol)])
    xs = np.asarray(list(thresholds), dtype=np.float64)
    if iou.size == 0:
        return xs, np.full(xs.shape, np.nan)
    if protocol.get("comparator", ">=") == ">":
        return xs, np.array([(iou > x).mean() for x in xs])
    return xs, np.array([(iou >= x - 1e-12).mean() for x in xs])


def category_giou(run: RunData, categories: Mapping[str, str]) -> dict[str, tuple[float, int]]:
    """category -> (gIoU, samples): the mean metric IoU of the run's samples of it."""
    protocol = _protocol(run)
    sums: dict[str, list[float]] = {}
    for r in run.records:
        cat = categories.get(r.get("sample_id"))
        if cat is not None and _counted(r, protocol):
            sums.setdefault(cat, []).append(float(r.get("iou") or 0.0))
    return {c: (float(np.mean(v)), len(v)) for c, v in sorted(sums.items())}


def gallery_picks(run: RunData, k: int) -> tuple[list[dict], list[dict]]:
    """(best k, worst k) samples by metric IoU, disjoint; best ones have a target."""
    if k <= 0:
        return [], []
    recs = [r for r in run.records if _counted(r, _protocol(run))]
    worst = sorted(recs, key=lambda r: (float(r.get("iou") or 0.0), r["sample_id"]))[:k]
    taken = {r["sample_id"] for r in worst}
    with_target = [r for r in recs if not r.get("gt_empty") and r["sample_id"] not in taken]
    best = sorted(with_target, key=lambda r: (-float(r.get("iou") or 0.0), r["sample_id"]))[:k]
    if len(recs) < 2 * k:  # few samples: show each once, best first
        worst = [r for r in worst if r["sample_id"] not in {b["sample_id"] for b in best}]
    return best, worst


# -- pictures ---------------------------------------------------------------------------

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_pr_curves(runs: Sequence[RunData]) -> str:
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    for k, run in enumerate(runs):
        xs, ys = pr_curve(run)
        colour = f"C{k % 10}"
        ax.plot(xs, ys, color=colour, label=run.label, linewidth=1.6)
        points = [(float(key[3:]), v) for key, v in run.metrics.items()
                  if key.startswith("Pr@") and isinstance(v, (int, float))]
        if points:
            ax.plot(*zip(*points), "o", color=colour, markersize=4)
    ax.set_xlabel("IoU threshold X")
    ax.set_ylabel("Pr@X (share of samples with IoU ≥ X)")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Pr@X per agent (dots: metrics.json)", fontsize=10)
    return _png(fig)


def plot_iou_histograms(runs: Sequence[RunData]) -> str:
    cols = min(3, len(runs))
    rows = -(-len(runs) // cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    bins = np.linspace(0, 1, 21)
    for k, run in enumerate(runs):
        ax = fig.add_subplot(rows, cols, k + 1)
        iou = [float(r.get("iou") or 0.0) for r in run.records if not r.get("gt_empty")]
        ax.hist(iou, bins=bins, color=f"C{k % 10}", edgecolor="white")
        ax.set_title(f"{run.label} (n={len(iou)})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("samples", fontsize=8)
        if k >= (rows - 1) * cols:
            ax.set_xlabel("IoU (samples with a target)", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_categories(runs: Sequence[RunData], table: Mapping[str, Mapping[str, tuple[float, int]]]) -> str:
    cats = sorted({c for per in table.values() for c in per})
    fig = _figure(5.6, max(2.5, 0.8 + len(cats) * (0.1 + 0.06 * len(runs))))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(runs))
    y = np.arange(len(cats))
    for k, run in enumerate(runs):
        per = table.get(run.label, {})
        values = [per[c][0] if c in per else np.nan for c in cats]
        ax.barh(y + k * height - 0.4 + height / 2, values, height=height, color=f"C{k % 10}", label=run.label)
    ax.set_yticks(y, [c.replace("_", " ") for c in cats], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("gIoU")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    return _png(fig)


def _jpeg(image: np.ndarray, quality: int = 85) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a gallery image")
    return base64.b64encode(buf.tobytes()).decode("ascii")


class Renderer:
    """Gallery overlays: a record's answer re-segmented with its run's segmenter on the
    sample's image in the agent's frame."""

    def __init__(self) -> None:
        self.datasets: dict[tuple, DatasetView] = {}
        self.scorers: dict[str, Any] = {}
        self.frames: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def dataset(self, run: RunData) -> DatasetView:
        key = (run.entry.dataset, run.config.get("root"), _protocol(run).get("question", "first"))
        if key not in self.datasets:
            self.datasets[key] = read_dataset(*key)
        return self.datasets[key]

    def scorer(self, run: RunData) -> Any:
        from t2s_env import Scorer
        from t2s_env.segmenters import make_segmenter

        seg = run.config.get("segmenter") or {}
        protocol = _protocol(run)
        key = json.dumps([seg.get("spec"), seg.get("options"), run.config.get("prompt_variant"),
                          protocol.get("prompt_geometry")], sort_keys=True, default=str)
        if key not in self.scorers:
            try:
                segmenter = make_segmenter(seg.get("spec") or "box", **dict(seg.get("options") or {}))
                kwargs = {"prompt_geometry": protocol["prompt_geometry"]} if protocol.get("prompt_geometry") else {}
                self.scorers[key] = Scorer(segmenter, run.config.get("prompt_variant") or "bbox+2pos",
                                           parser_mode="lenient", keep_masks=True, **kwargs)
            except Exception as exc:  # noqa: BLE001 - e.g. SAM2 weights not on this machine
                self.scorers[key] = f"segmenter {seg.get('spec')!r} is not available here ({type(exc).__name__}: {exc})"
        return self.scorers[key]

    def agent_view(self, sample: Any, protocol: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        size = protocol.get("image_size") or 840  # schema-1 runs wrote None for the native frame
        key = (sample.sample_id, str(sample.image_path), size, protocol.get("resize", "square"))
        if key not in self.frames:
            framed = load_scoring_frames(sample, size, protocol.get("resize", "square"), "agent").framed
            self.frames[key] = (framed.image, framed.gt_mask)
        return self.frames[key]

    def tile(self, run: RunData, record: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(base64 JPEG of the overlay, or None; why there is none)."""
        view = self.dataset(run)
        if view.error:
            return None, view.error
        sample = view.samples.get(record["sample_id"])
        if sample is None:
            return None, f"sample {record['sample_id']} is no longer in {run.entry.dataset}"
        scorer = self.scorer(run)
        try:
            image, gt = self.agent_view(sample, _protocol(run))
        except (T2SError, OSError, ValueError) as exc:
            return None, f"image of {record['sample_id']} cannot be read ({exc})"
        mask, prompts, note = None, record.get("prompts") or [], None
        if isinstance(scorer, str):
            note = scorer + "; prompts only"
        else:
            try:
                result = scorer.score(image, gt, [record.get("completion") or ""])[0]
                mask, prompts = result.mask, result.prompts
            except Exception as exc:  # noqa: BLE001 - one sample must not cost the whole page
                note = f"re-segmenting failed ({type(exc).__name__}: {exc}); prompts only"
        import cv2

        overlay = draw_overlay(image, pred_mask=mask, gt_mask=gt, prompts=prompts, empty_gt=False)
        tile = cv2.resize(overlay, (TILE, TILE), interpolation=cv2.INTER_AREA)
        tile = draw_overlay(tile, caption=f"IoU {float(record.get('iou') or 0):.2f}", empty_gt=not gt.any())
        return _jpeg(tile), note


# -- the page ---------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px} .meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0} td.l,th.l{text-align:left} tr.reported td{color:#777;font-style:italic}
.ci{color:#777;font-size:11px} .plots img{max-width:100%;margin:4px 12px 4px 0;vertical-align:top;background:#fff}
.gallery{display:flex;flex-wrap:wrap;gap:12px} .card{width:300px;background:#fff;border:1px solid #ddd;border-radius:6px;overflow:hidden}
.card img{display:block;width:300px;height:300px} .card .txt{padding:6px 8px;font-size:12px}
.card .q{font-weight:600;margin-bottom:4px} .card pre{white-space:pre-wrap;word-break:break-word;font-size:11px;background:#f5f5f5;padding:4px;margin:4px 0;max-height:120px;overflow:auto}
.note{color:#8a6d00;background:#fff8e1;border:1px solid #f0d98c;padding:4px 8px;font-size:12px;margin:6px 0;border-radius:4px}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start} .row>*{flex:0 0 auto} .row .plots img{max-width:480px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


def _interval(run: RunData | None, entry: Entry, key: str) -> str:
    """The metric's 95 % interval from metrics.json (else the leaderboard's), as text."""
    found = None
    if run is not None:
        found = (run.metrics.get("intervals") or {}).get(key)
    if found is None:
        found = (entry.intervals or {}).get(key)
    if isinstance(found, (list, tuple)) and len(found) == 2 and all(isinstance(v, (int, float)) for v in found):
        return f"<br><span class=ci>[{_pct(found[0])}, {_pct(found[1])}]</span>"
    return ""


def _images(plots: Sequence[tuple[str, str]]) -> str:
    return "<div class=plots>" + "".join(f"<img alt='{_e(t)}' title='{_e(t)}' src='data:image/png;base64,{b}'>"
                                         for t, b in plots) + "</div>"


def leaderboard_table(runs: Sequence[RunData], reported: Sequence[Entry]) -> str:
    head = ("agent", "segmenter", "protocol", "N", "gIoU", "cIoU", "Pr@0.5", "Pr@0.7", "Pr@0.9", "N-Acc", "failed", "source")
    rows = [(run.entry, run) for run in sorted(runs, key=lambda r: -(r.entry.giou or -1))]
    rows += [(e, None) for e in reported]
    out = ["<table><tr>" + "".join(f"<th class=l>{h}</th>" if h in ("agent", "segmenter", "protocol", "source")
                                  else f"<th>{h}</th>" for h in head) + "</tr>"]
    for entry, run in rows:
        m = run.metrics if run is not None else {}
        cells = [
            f"<td class=l>{_e(run.label if run else entry.agent)}</td>",
            f"<td class=l>{_e(entry.segmenter)}</td>",
            f"<td class=l>{_e(entry.protocol)}</td>",
            f"<td>{_e(entry.n if entry.n is not None else '—')}</td>",
            f"<td>{_pct(entry.giou)}{_interval(run, entry, 'gIoU')}</td>",
            f"<td>{_pct(entry.ciou)}{_interval(run, entry, 'cIoU')}</td>",
            f"<td>{_pct(entry.pr50)}{_interval(run, entry, 'Pr@0.5')}</td>",
            f"<td>{_pct(m.get('Pr@0.7'))}</td>",
            f"<td>{_pct(m.get('Pr@0.9'))}</td>",
            f"<td>{_pct(entry.nacc)}</td>",
            f"<td>{_e(m.get('n_failed', '—'))}</td>",
            (f"<td class=l title='{_e(entry.run_id)}'>{'partial run' if entry.partial else 'run'} …{_e(entry.run_id[-6:])}</td>"
             if run else "<td class=l>reported</td>"),
        ]
        out.append(f"<tr{' class=reported' if run is None else ''}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _answer_text(completion: str | None) -> str:
    if not completion:
        return "(no answer)"
    m = re.search(r"<answer>(.*?)(</answer>|$)", completion, re.S)
    text = (m.group(1) if m else completion).strip()
    return text if len(text) <= 600 else text[:600] + " …"


def card(renderer: Renderer, run: RunData, record: Mapping[str, Any]) -> str:
    image, note = renderer.tile(run, record)
    img = (f"<img alt='{_e(record['sample_id'])}' src='data:image/jpeg;base64,{image}'>" if image
           else "<div class=note>no overlay</div>")
    lines = [f"<div class=q>{_e(record.get('question', ''))}</div>",
             f"<div>{_e(record['sample_id'])} · IoU {float(record.get('iou') or 0):.3f}"
             + (" · empty GT" if record.get("gt_empty") else "") + "</div>",
             f"<pre>{_e(_answer_text(record.get('completion')))}</pre>"]
    for problem in (record.get("error"), record.get("parse_error"), note):
        if problem:
            lines.append(f"<div class=note>{_e(problem)}</div>")
    return f"<div class=card>{img}<div class=txt>{''.join(lines)}</div></div>"


def dataset_section(dataset: str, runs: list[RunData], reported: list[Entry], renderer: Renderer, k: int) -> str:
    parts = [f"<h2>{_e(dataset)}</h2>", leaderboard_table(runs, reported)]
    if not runs:
        return "\n".join(parts)
    view = renderer.dataset(runs[0])
    parts.append(_images([("Pr@X curves", plot_pr_curves(runs)), ("IoU histograms", plot_iou_histograms(runs))]))
    table = {r.label: category_giou(r, renderer.dataset(r).categories) for r in runs}
    if any(table.values()):
        cats = sorted({c for per in table.values() for c in per})
        rows = ["<table><tr><th class=l>category</th>" + "".join(f"<th>{_e(r.label)}</th>" for r in runs) + "</tr>"]
        for c in cats:
            cells = []
            for r in runs:
                v = table[r.label].get(c)
                cells.append(f"<td>{_pct(v[0])} <span class=ci>n={v[1]}</span></td>" if v else "<td>—</td>")
            rows.append(f"<tr><td class=l>{_e(c)}</td>{''.join(cells)}</tr>")
        parts.append("<h3>gIoU per category</h3><div class=row>" + "\n".join(rows) + "</table>"
                     + _images([("gIoU per category", plot_categories(runs, table))]) + "</div>")
    if view.error:
        parts.append(f"<div class=note>{_e(view.error)}: no categories or gallery overlays</div>")
    if k > 0:
        parts.append("<p class='meta legend'>Overlays in the agent's frame:<span style='background:#1e90ff'></span>"
                     "prediction<span style='background:#ffd700'></span>ground truth<span style='background:#ff2828'>"
                     "</span>boxes<span style='background:#28dc28'></span>positive points"
                     "<span style='background:#ff00ff'></span>negative points</p>")
        for run in runs:
            best, worst = gallery_picks(run, k)
            parts.append(f"<h3>{_e(run.label)}</h3>")
            for title, picks in (("best", best), ("worst", worst)):
                if picks:
                    parts.append(f"<div class=meta>{title}</div><div class=gallery>"
                                 + "".join(card(renderer, run, r) for r in picks) + "</div>")
    return "\n".join(parts)


def build_page(store: ResultsStore, runs: list[RunData], reported: list[Entry], notes: list[str], k: int,
               title: str) -> str:
    renderer = Renderer()
    datasets = sorted({r.entry.dataset for r in runs})  # reported rows join the datasets that have runs
    sections = [dataset_section(d, [r for r in runs if r.entry.dataset == d],
                                [e for e in reported if e.dataset == d], renderer, k) for d in datasets]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    notes_html = "".join(f"<div class=note>{_e(n)}</div>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<div class=meta>{len(runs)} run(s) from {_e(shown_folder(store.out))} · generated {stamp} · metrics in % with 95 % bootstrap intervals where recorded</div>
{notes_html}
{''.join(sections)}
</body></html>
"""


def shown_folder(folder: str | Path) -> str:
    """The results folder as the page names it: as the user gave it when relative, by its
    name alone when absolute (a page is shared; the path of the user's home is not)."""
    folder = Path(folder)
    return folder.as_posix() if not folder.is_absolute() else (folder.name or folder.as_posix())


# -- writing ----------------------------------------------------------------------------

def _reserve(path: Path) -> Path:
    """A temporary file beside ``path``, created now so that an unwritable path fails
    before any work; renamed onto ``path`` when the page is complete. Created with mode
    0666 less the umask, as any new file (mkstemp's 0600 would survive the rename)."""
    if path.is_dir():
        raise ConfigError(f"--html {path} is a folder; give a file path such as {path / 'report.html'}")
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.partial"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot write --html {path}: {exc.strerror or exc}; "
                              "choose a path in a folder you can write to") from None
    raise ConfigError(f"cannot write --html {path}: no free temporary name beside it; remove its .partial files")


def write_report(out: str | Path, html_path: str | Path, datasets: Sequence[str] | None = None,
                 all_runs: bool = False, gallery: int = DEFAULT_GALLERY, title: str = "Think2Seg report") -> dict[str, Any]:
    """Write the page; returns {"path", "runs", "bytes"}."""
    if gallery < 0:
        raise ConfigError(f"--gallery must be 0 or more samples per agent, got {gallery}")
    store = ResultsStore(out)
    path = Path(html_path).expanduser()
    tmp = _reserve(path)
    try:
        if not store.exists():
            raise T2SError(f"no results in {store.out} (no {store.db_path.name}); run `t2s bench --out {out}` first")
        runs, reported, notes = load_runs(store, datasets, all_runs)
        if not runs:
            hint = " (partial runs are left out: pass --all to include them)" if not all_runs else ""
            wanted = f" of {', '.join(datasets)}" if datasets else ""
            raise T2SError(f"no recorded runs{wanted} in {store.out}{hint}")
        page = build_page(store, runs, reported, notes, gallery, title)
        try:
            tmp.write_text(page, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"cannot write --html {path}: {exc.strerror or exc}; "
                              "choose a path in a folder you can write to") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": path, "runs": len(runs), "bytes": path.stat().st_size}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s report",
        description="Write one self-contained HTML page of the recorded runs: leaderboard with intervals, "
        "Pr@X curves, IoU histograms, gIoU per category, and each agent's best and worst samples.",
    )
    p.add_argument("--out", default="results", help="results folder that t2s bench wrote (default: results)")
    p.add_argument("--html", help="the page to write (default: <out>/report.html)")
    p.add_argument("--dataset", action="append", metavar="NAME:SPLIT", help="only these datasets (repeat or comma-separate)")
    p.add_argument("--all", action="store_true", help="every recorded run, partial ones included (default: the leaderboard's runs)")
    p.add_argument("--gallery", type=int, default=DEFAULT_GALLERY, metavar="K",
                   help=f"best and worst samples shown per agent (default {DEFAULT_GALLERY}; 0: no gallery)")
    p.add_argument("--title", default="Think2Seg report")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write an HTML report of the recorded runs (leaderboard, curves, per-category gIoU, gallery)."""
    args = build_parser().parse_args(argv)
    datasets = [d.strip() for v in args.dataset or () for d in v.split(",") if d.strip()] or None
    html_path = args.html or str(Path(args.out) / "report.html")
    done = write_report(args.out, html_path, datasets, args.all, args.gallery, args.title)
    print(f"wrote {done['path']} ({done['runs']} run(s), {done['bytes'] / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
