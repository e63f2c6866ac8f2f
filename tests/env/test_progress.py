"""t2s_env.progress: a bar on a terminal, timed plain lines in a log, nothing when turned off."""

from __future__ import annotations

import io
import sys

import pytest

from t2s_env import progress
from t2s_env.progress import LogProgress, progress_bar, progress_iter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


def test_log_lines_come_once_per_interval_with_rate_and_time_left(clock, capsys):
    with progress_bar(600, "synthetic", "image") as bar:  # captured stderr: not a terminal
        assert isinstance(bar, LogProgress)
        for _ in range(600):
            clock.now += 0.25  # 4 images/s: 150 s in all
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10  # one per LOG_EVERY_S (15 s) of the 150; the last one at 600/600
    assert lines[0] == "synthetic: 60/600 images (10%), 15 s, 4 images/s, about 2.2 min left"
    assert lines[-1] == "synthetic: 600/600 images (100%), 2.5 min, 4 images/s"


def test_work_shorter_than_the_interval_prints_nothing(clock, capsys):
    for _ in progress_iter(range(30), 30, "checking", "mask"):
        clock.now += 0.1
    assert capsys.readouterr().err == ""


def test_a_resumed_count_postfix_and_write(clock, capsys):
    bar = progress_bar(1000, "PPO", "action", initial=400, log_every_s=0)
    clock.now += 2.0
    bar.set_postfix(reward=2.41234, iou=0.125)
    bar.update(100)
    bar.write("t2s: step 500: val gIoU 3.2", file=sys.stderr)
    bar.close()
    assert capsys.readouterr().err.splitlines() == [
        "PPO: 500/1000 actions (50%), 2 s, 50 actions/s, about 10 s left; reward 2.412, iou 0.125",
        "t2s: step 500: val gIoU 3.2",
    ]


def test_off_by_flag_or_environment(monkeypatch, capsys):
    assert progress_bar(3, "x", "item", enabled=False).disable
    monkeypatch.setenv("T2S_NO_PROGRESS", "1")
    for enabled in (None, True):
        bar = progress_bar(3, "x", "item", enabled=enabled, log_every_s=0)
        bar.update(3)
        bar.close()
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress_bar(3, "x", "item") as bar:
        assert not isinstance(bar, LogProgress)
        bar.update(3)
    assert "x: 100%" in tty.getvalue() and "3/3" in tty.getvalue()
