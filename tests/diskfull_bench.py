"""Run `t2s bench` with its results on a nearly full disk, for every amount of free space
from 0 up to what the run needs, then free the space and resume what stopped.

Run inside a private mount namespace where MOUNT is a small tmpfs (tests/benchmarks/test_harness.py
starts it with ``unshare --user --map-root-user --mount``). Prints one JSON line per case:
free kB, exit status, the last stderr line, whether a traceback escaped, the resume
status and whether the resumed samples equal those of a run with space to spare."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import traceback
from pathlib import Path


def free_kb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024


def fill(mount: Path, leave_kb: int) -> None:
    """A filler file that leaves ``leave_kb`` kB free (tmpfs counts whole 4 kB pages)."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, (free_kb(mount) - leave_kb) * 1024))


def bench(argv: list[str]) -> tuple[int, str, bool]:
    """(exit status, stderr, whether an exception escaped the CLI) of one in-process call."""
    from t2s_env.cli import main

    err = io.StringIO()
    escaped = False
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(["bench", *argv])
        except BaseException:  # noqa: BLE001 - what the test looks for
            traceback.print_exc(file=err)
            rc, escaped = -1, True
    return rc, err.getvalue(), escaped


def samples(out: Path) -> dict[str, str]:
    """agent folder suffix -> samples.jsonl text, for every run under ``out``."""
    got = {}
    for d in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else ():
        label = d.name.split("-", 2)[2]  # drop the timestamp
        got[label.rsplit("-", 1)[0]] = (d / "samples.jsonl").read_text() if (d / "samples.jsonl").exists() else ""
    return got


def main() -> int:
    """``python -m tests.diskfull_bench MOUNT BENCH_ARGS...``"""
    mount, common = Path(sys.argv[1]), sys.argv[2:]
    ref = mount / "ref"
    rc, err, escaped = bench(["--out", str(ref), *common])
    assert rc == 0 and not escaped, err
    want = samples(ref)
    used_kb = sum(f.stat().st_blocks * 512 for f in ref.rglob("*") if f.is_file()) // 1024
    shutil.rmtree(ref)
    step = int(os.environ.get("DISKFULL_STEP_KB", "4"))
    # journals and temporary files need more than the finished run holds: go on until a run fits
    for leave in range(0, 2 * used_kb + 64, step):
        out = mount / "out"
        shutil.rmtree(out, ignore_errors=True)
        fill(mount, leave)
        rc, err, escaped = bench(["--out", str(out), *common])
        lines = err.strip().splitlines()
        case = {"free_kb": leave, "rc": rc, "last": lines[-1] if lines else "", "traceback": escaped or "Traceback" in err}
        (mount / "filler").unlink()
        resumed = []
        for d in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else ():
            if "status: complete" not in (d / "run.yaml").read_text():
                r_rc, r_err, r_escaped = bench(["--out", str(out), "--resume", d.name, "--no-progress", "--no-leaderboard"])
                resumed.append(r_rc)
                case["traceback"] = case["traceback"] or r_escaped or "Traceback" in r_err
        case["resumed"] = resumed
        case["run_folders"] = len(list((out / "runs").iterdir())) if (out / "runs").is_dir() else 0
        case["same_samples"] = samples(out) == want
        print(json.dumps(case), flush=True)
        if rc == 0:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
