"""``t2s report``: the HTML page (content, numbers, a real headless browser), its bad
input, and the TensorBoard HParams table of a run."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2s_env.cli import main as t2s_main
from t2s_env.datasets.synthetic import generate
from think2seg.benchmarks import cli as bench_cli
from think2seg.benchmarks.report import (RunData, category_giou, load_runs, pr_curve, read_dataset, shown_folder,
                                         write_report)
from think2seg.benchmarks.results_store import ResultsStore

AGENTS = "oracle-box,center-box:0.4,empty"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three agents benched on a small synthetic set (categories in its QA files)."""
    base = tmp_path_factory.mktemp("report")
    generate(base / "data", n=6, seed=5, splits=["val"], progress=False)
    out = base / "results"
    assert bench_cli.main(["--dataset", "earthreason:val", "--root", str(base / "data"), "--segmenter", "box",
                         "--agents", AGENTS, "--out", str(out), "--no-progress", "--no-leaderboard",
                         "--no-tensorboard"]) == 0
    return out


@pytest.fixture(scope="module")
def page(results, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    assert t2s_main(["report", "--out", str(results), "--html", str(path), "--gallery", "2"]) == 0
    return path


def images_of(text: str) -> list[tuple[str, bytes]]:
    return [(kind, base64.b64decode(data)) for kind, data in re.findall(r"src='data:image/(png|jpeg);base64,([^']+)'", text)]


def test_page_is_self_contained_with_every_part(page, results):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", text)  # nothing fetched from anywhere
    runs, _, _ = load_runs(ResultsStore(results), None, False)
    assert {r.label for r in runs} == {"oracle-box", "center-box:0.4", "empty"}
    for run in runs:
        assert run.label in text
        lo, hi = run.metrics["intervals"]["gIoU"]  # bootstrap interval of metrics.json, in %
        assert f"[{100 * lo:.2f}, {100 * hi:.2f}]" in text
    images = images_of(text)
    kinds = [k for k, _ in images]
    assert kinds.count("png") == 3  # Pr@X curves, IoU histograms, gIoU per category
    assert kinds.count("jpeg") == 3 * 4  # best 2 + worst 2 per agent
    for _, data in images:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert min(im.size) > 100
    categories = set(read_dataset("earthreason:val", runs[0].config["root"], "first").categories.values())
    assert "gIoU per category" in text and all(f"<td class=l>{c}</td>" in text for c in categories)
    oracle = next(r for r in runs if r.label == "oracle-box")
    best = max((r for r in oracle.records if not r["gt_empty"]), key=lambda r: r["iou"])
    assert best["question"].replace("'", "&#x27;") in text and "bbox_2d" in text


def test_curves_and_categories_agree_with_the_recorded_metrics(results):
    runs, _, _ = load_runs(ResultsStore(results), None, False)
    categories = read_dataset("earthreason:val", runs[0].config["root"], "first").categories
    assert len(set(categories.values())) >= 5
    for run in runs:
        xs, ys = pr_curve(run, [0.5, 0.6, 0.7, 0.8, 0.9])
        assert ys.tolist() == pytest.approx([run.metrics[f"Pr@{x}"] for x in xs.tolist()])
        per = category_giou(run, categories)
        assert sum(n for _, n in per.values()) == len(run.records)
        mean = sum(g * n for g, n in per.values()) / len(run.records)
        assert mean == pytest.approx(run.metrics["gIoU"])


def test_pr_curve_follows_the_protocol_denominator():
    recs = [{"sample_id": "a", "iou": 0.9, "parsed_ok": True, "gt_empty": False, "answer_empty": False},
            {"sample_id": "b", "iou": 0.0, "parsed_ok": False, "gt_empty": False, "answer_empty": False}]
    def run(protocol):
        return RunData(None, {}, {"protocol": protocol}, recs)
    assert pr_curve(run({"pr_denominator": "all"}), [0.5])[1].tolist() == [0.5]
    assert pr_curve(run({"pr_denominator": "parsed"}), [0.5])[1].tolist() == [1.0]
    assert pr_curve(run({"comparator": ">"}), [0.9])[1].tolist() == [0.0]


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  console.log('T2S-PROBE images ' + ok + '/' + imgs.length);
});
</script></body>"""


@pytest.mark.slow
def test_page_renders_in_a_headless_browser(page, tmp_path):
    """Chromium loads the page with no console message but the probe's, and every image
    decodes (naturalWidth > 0)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (scripts/install.sh installs Debian's chromium when it can: "
                    "apt-get install chromium)")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,2000", "--virtual-time-budget=10000", f"--screenshot={shot}", probed.as_uri()],
        capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    n_images = len(images_of(page.read_text(encoding="utf-8")))
    assert any(f"T2S-PROBE images {n_images}/{n_images}" in line for line in console), proc.stderr[-3000:]
    assert [line for line in console if "T2S-PROBE" not in line] == []
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280) and pixels.std() > 10  # something was painted


@pytest.mark.parametrize("where, needle", [
    ("missing/dir/report.html", "No such file or directory"),
    ("a_file/report.html", "Not a directory"),
    (".", "is a folder"),
])
def test_unwritable_html_path_is_one_line(results, tmp_path, capsys, where, needle):
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / where
    assert t2s_main(["report", "--out", str(results), "--html", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("t2s: error: ") and needle in err and str(target) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing half-written


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=["022", "027", "077"])
def test_page_mode_follows_the_umask(results, tmp_path, umask):
    """A page is a normal file: 0666 less the umask (0644 under 022), not mkstemp's 0600;
    written atomically, so nothing but the page is left beside it."""
    old = os.umask(umask)
    try:
        write_report(results, tmp_path / "r.html", gallery=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.html").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_header_names_the_results_folder_as_given_never_an_absolute_path(results, tmp_path, monkeypatch):
    monkeypatch.chdir(results.parent)
    write_report("results", tmp_path / "relative.html", gallery=0)
    write_report(str(results), tmp_path / "absolute.html", gallery=0)
    for name in ("relative.html", "absolute.html"):
        meta = re.search(r"<div class=meta>(.*?)</div>", (tmp_path / name).read_text(encoding="utf-8")).group(1)
        assert " run(s) from results · generated" in meta and str(results.parent) not in meta, meta
    assert shown_folder("runs/../results") == "runs/../results" and shown_folder("/") == "/"


def test_no_results_and_bad_gallery_are_one_line(tmp_path, results, capsys):
    assert t2s_main(["report", "--out", str(tmp_path / "none"), "--html", str(tmp_path / "r.html")]) == 2
    assert "no results in" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
    assert t2s_main(["report", "--out", str(results), "--html", str(tmp_path / "r.html"), "--gallery", "-1"]) == 2
    assert "--gallery" in capsys.readouterr().err


def test_tensorboard_run_has_the_hparams_table(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from think2seg.benchmarks.tensorboard_log import write_run

    metrics = {"gIoU": 0.5, "cIoU": 0.25, "Pr@0.5": 0.5, "N-Acc": None, "n": 8, "agent": "oracle-box",
               "dataset": "synthetic:val", "segmenter": "box", "protocol": {"name": "strict"}}
    write_run(tmp_path / "run", metrics, [], "summary")
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    settings = {k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()}
    assert settings == {"agent": "oracle-box", "dataset": "synthetic:val", "segmenter": "box", "protocol": "strict",
                        "n": 8.0}
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    tags = {m.name.tag for m in experiment.metric_infos}
    assert tags == {"metrics/gIoU", "metrics/cIoU", "metrics/Pr@0.5"}
    assert tags <= set(events.Tags()["scalars"])  # the table's metric columns read these scalars


def test_page_without_the_data_says_so_instead_of_failing(tmp_path):
    """The dataset moved away since the run: the page still has the numbers and plots, and
    says why the gallery has no overlays."""
    generate(tmp_path / "data", n=3, seed=5, splits=["val"], progress=False)
    out = tmp_path / "results"
    assert bench_cli.main(["--dataset", "earthreason:val", "--root", str(tmp_path / "data"), "--segmenter", "box",
                         "--agents", "oracle-box", "--out", str(out), "--no-progress", "--no-leaderboard",
                         "--no-tensorboard"]) == 0
    shutil.rmtree(tmp_path / "data")
    done = write_report(out, tmp_path / "r.html", gallery=1)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert done["runs"] == 1 and "cannot be read here" in text and "no overlay" in text
    assert [k for k, _ in images_of(text)] == ["png", "png"]  # curves and histograms; no categories
