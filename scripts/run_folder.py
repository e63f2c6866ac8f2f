"""A training run's folder, shared by ``t2s train grpo`` and ``t2s train rl``: create it
(or fail in one line), find what to resume from (``--resume`` is short for trl's
``resume_from_checkpoint``), and write step checkpoints atomically.
The resolved config is saved by :func:`think2seg.scripts.config.save_resolved_config`.

    prepare_output_dir(out)
    resume = resolve_resume(cfg.resume, out, latest=latest_step_checkpoint, is_checkpoint=os.path.isfile,
                            refusal="no such checkpoint file; use resume=auto")
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from t2s_env.errors import CheckpointError, ConfigError


def prepare_output_dir(path: str | os.PathLike[str]) -> None:
    """Create ``output_dir`` or fail with one line (a file in the way, no permission)."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"output_dir {path} cannot be created: it or a folder above it is a file; "
                          "pass output_dir=<a folder path>") from None
    except OSError as exc:
        raise ConfigError(f"output_dir {path} cannot be created: {exc.strerror or exc}; pass output_dir=<a writable folder>") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {path} is not writable; pass output_dir=<a writable folder>")


def resolve_resume(resume: str | None, output_dir: str | os.PathLike[str], *, latest: Callable[[str], Any],
                   is_checkpoint: Callable[[str], bool], refusal: Exception) -> Any:
    """None (fresh: no ``resume``, or ``auto`` with nothing in ``output_dir`` yet), the newest
    checkpoint ``latest(output_dir)`` for ``auto``, or the path ``resume`` when
    ``is_checkpoint`` accepts it; else raises ``refusal`` (one line naming the fix)."""
    if resume in (None, "", "none"):
        return None
    if resume == "auto":
        found = latest(str(output_dir)) if os.path.isdir(output_dir) else None
        if found is None:
            print(f"t2s: no checkpoint in {output_dir}; starting fresh", file=sys.stderr)
        return found
    path = os.path.expanduser(resume)
    if not is_checkpoint(path):
        raise refusal
    return path


def resume_alias(argv: Sequence[str]) -> list[str]:
    """``--resume [CHECKPOINT]`` -> ``--resume_from_checkpoint CHECKPOINT|auto`` (trl's key).

    >>> resume_alias(["--max_steps", "5", "--resume"])
    ['--max_steps', '5', '--resume_from_checkpoint', 'auto']
    >>> resume_alias(["--resume", "runs/x/checkpoint-4", "--resume=runs/y"])
    ['--resume_from_checkpoint', 'runs/x/checkpoint-4', '--resume_from_checkpoint', 'runs/y']
    """
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--resume="):
            out += ["--resume_from_checkpoint", tok.split("=", 1)[1] or "auto"]
        elif tok == "--resume":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            takes_next = nxt is not None and not nxt.startswith("-") and "=" not in nxt
            out += ["--resume_from_checkpoint", nxt if takes_next else "auto"]
            i += takes_next
        else:
            out.append(tok)
        i += 1
    return out


def latest_step_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The ``step_<N>.pt`` of ``folder`` with the largest N; None when there is none."""
    def step(p: Path) -> int:
        n = p.stem.split("_")[1]
        return int(n) if n.isdigit() else -1

    found = sorted(Path(folder).glob("step_*.pt"), key=step)
    return found[-1] if found else None


def save_step_checkpoint(folder: str | os.PathLike[str], step: int, fmt: str, module: Any, **extra: Any) -> Path:
    """``folder/step_<step>.pt``, written atomically (a crash leaves the previous checkpoint,
    never half a file): ``format`` ``fmt``, ``extra`` (counters, the config), ``module``'s
    state dict (a tianshou algorithm: networks and optimisers) and the torch, numpy and
    Python RNG states."""
    import random

    import numpy as np
    import torch

    payload = {"format": fmt, **extra, "algorithm": module.state_dict(),
               "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
                       "python": random.getstate()[1]}}
    path = Path(folder) / f"step_{step}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_step_checkpoint(path: str | os.PathLike[str], fmt: str, what: str, module: Any) -> dict[str, Any]:
    """Load a :func:`save_step_checkpoint` file of format ``fmt`` into ``module`` and restore
    torch's RNG; returns the payload. CheckpointError (one line) for an unreadable or foreign
    file, or one whose networks do not fit ``module``."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}); delete it or pick another with resume=PATH") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{path} is not a `{what}` checkpoint")
    try:
        module.load_state_dict(payload["algorithm"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} does not fit this config's networks ({str(exc).splitlines()[0][:160]})") from None
    torch.set_rng_state(payload["rng"]["torch"])
    return payload


__all__ = ["latest_step_checkpoint", "load_step_checkpoint", "prepare_output_dir", "resolve_resume", "resume_alias",
           "save_step_checkpoint"]
