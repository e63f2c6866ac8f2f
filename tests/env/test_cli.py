"""The top level of the ``t2s`` command: --version, a reader that closes the pipe early,
a full output device, and progress bars."""

from __future__ import annotations

import errno
import importlib.metadata
import io
import os
import subprocess
import sys

import pytest

from t2s_env import progress
from t2s_env.cli import main
from t2s_env.datasets.synthetic import ensure_dataset


class TerminalStderr(io.StringIO):
    """A stand-in for stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == f"t2s (think2seg) {importlib.metadata.version('think2seg')}\n"


def test_closed_pipe_ends_quietly(tmp_path):
    """``t2s leaderboard | head``: the reader is gone before t2s writes a byte."""
    proc = subprocess.Popen([sys.executable, "-m", "t2s_env.cli", "leaderboard", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the interpreter has started and written anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [["leaderboard", "--out", "OUT"], ["--version"], ["data", "--help"],
                                  ["leaderboard", "--help"]], ids=["leaderboard", "version", "help", "command-help"])
def test_a_full_output_device_is_one_line_and_a_failure(tmp_path, argv):
    """``t2s leaderboard > /dev/full``: ENOSPC on stdout is one line on stderr and status 2,
    with no traceback (also none from the interpreter's final flush at exit)."""
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "t2s_env.cli", *argv], stdout=full, stderr=subprocess.PIPE,
                              timeout=120)
    lines = [line for line in proc.stderr.decode().splitlines() if not line.startswith("t2s leaderboard: no runs")]
    assert proc.returncode == 2
    assert lines == ["t2s: error: cannot write the output to stdout: No space left on device; "
                     "write it to a device or file with free space"], proc.stderr.decode()


class FullStdout(io.StringIO):
    """A stdout whose device is full."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stdout_errors_are_told_from_the_commands_own(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", FullStdout())
    assert main(["--version"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert sys.stdout.__class__ is FullStdout  # the command's stdout is given back

    def own_file_error(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/file")

    monkeypatch.setattr("t2s_env.cli._find_registered", lambda argv: (own_file_error, []))
    with pytest.raises(OSError):  # a command's own I/O error is its to report, never called a stdout error
        main(["anything"])


def test_data_synth_and_check_progress_in_a_log(tmp_path, monkeypatch, capsys):
    """stderr that is not a terminal (CI, nohup): plain lines every LOG_EVERY_S seconds and
    a last one, none with --no-progress or T2S_NO_PROGRESS=1."""
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # as if each image took longer than the interval
    argv = ["data", "synth", "--splits", "val,test", "--n", "2", "--seed", "5"]
    assert main([*argv, "--out", str(tmp_path / "logged")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"synthetic: {k}/4 images ({25 * k}%)" for k in (1, 2, 3, 4)]
    assert "images/s" in lines[0] and "left" in lines[0] and "left" not in lines[-1]
    assert "\r" not in "".join(lines)  # no bar redraws in a log
    check = ["data", "check", "earthreason", "--root", str(tmp_path / "logged"), "--split", "val"]
    assert main(check) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("checking: 2/2 masks (100%)")
    assert main([*argv, "--out", str(tmp_path / "off"), "--no-progress"]) == 0
    monkeypatch.setenv("T2S_NO_PROGRESS", "1")
    assert main(check) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.undo()  # the real interval: work shorter than it prints nothing
    assert main([*argv, "--out", str(tmp_path / "quick")]) == 0
    assert capsys.readouterr().err == ""


def test_data_synth_and_check_show_a_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    argv = ["data", "synth", "--splits", "val", "--n", "1", "--seed", "5"]

    tty = TerminalStderr()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*argv, "--out", str(tmp_path / "shown")]) == 0
    assert "synthetic: 100%" in tty.getvalue() and "1/1" in tty.getvalue()

    tty.seek(0), tty.truncate()
    assert main([*argv, "--out", str(tmp_path / "off"), "--no-progress"]) == 0
    assert tty.getvalue() == ""
    assert capsys.readouterr().out.count("val: 1 images") == 2

    check = ["data", "check", "earthreason", "--root", str(tmp_path / "shown"), "--split", "val"]
    tty.seek(0), tty.truncate()
    assert main(check) == 0
    assert "checking: 100%" in tty.getvalue() and "1/1" in tty.getvalue()
    tty.seek(0), tty.truncate()
    assert main([*check, "--no-progress"]) == 0
    assert tty.getvalue() == ""
    monkeypatch.undo()  # stderr captured again: not a terminal, and the check is quicker than LOG_EVERY_S
    assert main(check) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("earthreason:val  images 1") == 3


def test_first_use_generation_shows_progress_on_a_terminal(tmp_path, monkeypatch):
    tty = TerminalStderr()
    monkeypatch.setattr(sys, "stderr", tty)
    ensure_dataset(tmp_path / "cache", {"val": 2}, seed=5)
    text = tty.getvalue()
    assert "generating the synthetic dataset" in text and "synthetic: 100%" in text and "2/2" in text
