"""`plot_learning_curve` writes its figure beside the run by default, never over a tracked doc."""

from __future__ import annotations

import pytest

from think2seg.scripts.plot_learning_curve import main as plot_main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def run_dir(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "runs" / "rl"
    writer = SummaryWriter(str(run / "tb"))
    for step, value in [(0, 2.0), (512, 5.5), (1024, 8.0)]:
        writer.add_scalar("val/giou", value, step)
        writer.add_scalar("train/iou", value / 100, step)
    writer.add_scalar("baseline/center-box:0.5", 4.0, 0)
    writer.close()
    return run


def test_default_output_is_in_the_run_folder_not_docs(run_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "docs").mkdir()
    committed = tmp_path / "docs" / "learning_curve.png"
    committed.write_bytes(b"the committed figure")
    monkeypatch.chdir(tmp_path)  # a checkout: docs/learning_curve.png is relative to here
    assert plot_main([str(run_dir)]) == 0
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == PNG
    assert committed.read_bytes() == b"the committed figure"
    assert capsys.readouterr().out.strip() == f"wrote {run_dir / 'learning_curve.png'}"


def test_explicit_out_regenerates_the_named_file(run_dir, tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    committed = tmp_path / "docs" / "learning_curve.png"
    committed.write_bytes(b"the committed figure")
    monkeypatch.chdir(tmp_path)
    assert plot_main([str(run_dir), "--out", "docs/learning_curve.png"]) == 0
    assert committed.read_bytes()[:8] == PNG
    assert not (run_dir / "learning_curve.png").exists()
