"""What a trl ``GRPOTrainer`` of an hf_vlm prompter logs beside trl's own metrics.

- :class:`RewardMonitor`: the reward's ``on_scores`` hook (:func:`t2s_env.make_reward_functions`):
  per-batch IoU, parse failures, group reward spread into trl's metrics; the latest
  completions; an optional per-completion JSONL dump.
- :class:`T2SCallback` (made by :func:`make_callback`): sample completions as TensorBoard
  text and a periodic greedy validation with overlays (:class:`ValData`).

    monitor = RewardMonitor()
    funcs = make_reward_functions(scorer, gt_mask_lookup=lookup, on_scores=monitor)
    funcs[0] = monitor.wrap(funcs[0])
    callback = make_callback(monitor, val, scorer, prompt_variant="bbox+2pos", reward_weights=[2, 1, 1],
                             max_new_tokens=512)
    trainer = GRPOTrainer(..., reward_funcs=funcs, callbacks=[callback]); callback.trainer = trainer
"""

from __future__ import annotations

import functools
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from t2s_env import RewardWeights, Scorer


class RewardMonitor:
    """The Scorer's ``on_scores`` hook: per-batch statistics into trl's metrics (averaged
    over ranks and logging steps), the latest completions for TensorBoard, and the optional
    per-completion debug dump.

    Logged (as ``train/t2s/...``): ``mean_iou``, ``parse_failure_rate`` (strict parse),
    ``empty_answer_rate``, ``group_reward_std`` (mean std of the total reward within a
    group) and ``zero_std_group_frac`` (groups with no learning signal).
    """

    def __init__(self, keep: int = 4, dump_dir: str | None = None, rank: int = 0) -> None:
        self.keep = keep
        self.dump_path = os.path.join(dump_dir, f"rank{rank}.jsonl") if dump_dir else None
        self.samples: list[dict[str, Any]] = []
        self.last: dict[str, float] = {}
        self._completions: list[Any] = []

    def wrap(self, fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
        """Wrap the iou reward to remember the completions it scores (same name for trl)."""

        def wrapped(prompts=None, completions=(), **kwargs):
            self._completions = list(completions)
            return fn(prompts=prompts, completions=completions, **kwargs)

        wrapped.__name__ = fn.__name__
        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapped

    def __call__(self, results: list[Any], columns: dict[str, Any]) -> None:
        from t2s_env.scoring import completion_text

        n = len(results)
        if n == 0:
            return
        keys = columns.get("row_id") or columns.get("sample_id") or list(range(n))
        groups: dict[Any, list[float]] = defaultdict(list)
        for key, r in zip(keys, results):
            groups[key].append(r.reward)
        stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in groups.values()]
        stats = {
            "t2s/mean_iou": float(np.mean([r.iou for r in results])),
            "t2s/parse_failure_rate": float(np.mean([not r.parsed_ok for r in results])),
            "t2s/empty_answer_rate": float(np.mean([r.answer_empty for r in results])),
            "t2s/group_reward_std": float(np.mean(stds)),
            "t2s/zero_std_group_frac": float(np.mean([s < 1e-6 for s in stds])),
        }
        self.last = stats
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for k, v in stats.items():
                log_metric(k, v)
        texts = [completion_text(c) for c in self._completions] if len(self._completions) == n else [""] * n
        questions = columns.get("question") or [""] * n
        step = getattr(columns.get("trainer_state"), "global_step", None)
        self.samples = [
            {"question": questions[i], "completion": texts[i], "reward": results[i].reward, "iou": results[i].iou,
             "parsed": results[i].parsed_ok}
            for i in range(min(self.keep, n))
        ]
        if self.dump_path:
            os.makedirs(os.path.dirname(self.dump_path), exist_ok=True)
            ids = columns.get("sample_id") or [None] * n
            with open(self.dump_path, "a", encoding="utf-8") as f:
                for i, r in enumerate(results):
                    f.write(json.dumps({"step": step, "sample_id": ids[i], "question": questions[i],
                                        "completion": texts[i], "reward": r.reward,
                                        "components": r.reward_components, "error": r.error}) + "\n")


@dataclass
class ValData:
    """Validation samples in the protocol frame, with their chat messages."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    questions: list[str]
    messages: list[list[dict[str, Any]]]


class T2SCallback:
    """Writes sample completions and validation results into trl's TensorBoard run. A
    transformers ``TrainerCallback`` once made by :func:`make_callback` (the base class is
    added there so that importing this module, e.g. for ``t2s --help``, skips ~2 s of
    transformers' trainer imports). Set ``trainer`` once the trainer exists.

    Every ``sample_log_steps`` steps (0: never) the monitor's latest completions go to
    ``samples/completions``; every ``val_steps`` steps (0: never) the ``val`` samples are
    answered greedily (at most ``max_new_tokens``, ``val_batch_size`` at a time) and scored
    leniently with ``scorer``'s segmenter and frame: ``val/*`` scalars, overlays, texts."""

    def __init__(self, monitor: RewardMonitor, val: ValData | None, scorer: Scorer, *, prompt_variant: str,
                 reward_weights: Sequence[float], max_new_tokens: int, sample_log_steps: int = 10,
                 val_steps: int = 100, val_batch_size: int = 8) -> None:
        self.monitor = monitor
        self.val = val
        self.val_scorer = Scorer(scorer.segmenter, prompt_variant, parser_mode="lenient", coord_frame=scorer.coord_frame,
                                 reward_weights=RewardWeights(*reward_weights), keep_masks=True)
        self.max_new_tokens = max_new_tokens
        self.sample_log_steps = sample_log_steps
        self.val_steps = val_steps
        self.val_batch_size = val_batch_size
        self.trainer: Any = None
        self.val_history: list[dict[str, float]] = []

    def writer(self) -> Any:
        from transformers.integrations import TensorBoardCallback

        if self.trainer is None:
            return None
        for cb in self.trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                return cb.tb_writer
        return None

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.sample_log_steps > 0 and step % self.sample_log_steps == 0 and state.is_world_process_zero:
            self.log_samples(step)
        if self.val is not None and self.val_steps > 0 and step % self.val_steps == 0:
            self.validate(step)
        return control

    def log_samples(self, step: int) -> None:
        w = self.writer()
        if w is None or not self.monitor.samples:
            return
        parts = []
        for s in self.monitor.samples:
            parts.append(
                f"**Q:** {s['question']}  \n**reward** {s['reward']:.3f} · **IoU** {s['iou']:.3f} · "
                f"**parsed** {s['parsed']}\n\n```\n{s['completion'][:4000]}\n```"
            )
        w.add_text("samples/completions", "\n\n---\n\n".join(parts), step)
        w.flush()

    def validate(self, step: int) -> dict[str, float] | None:
        """Greedy generation on the validation samples (every rank takes part: under ZeRO-3
        the parameters are gathered collectively), scored and logged on rank 0."""
        from trl.models.utils import unwrap_model_for_generation

        from t2s_env.render import draw_overlay, image_grid

        from .generation import generate_completions

        tr = self.trainer
        val = self.val
        was_training = tr.model.training
        with unwrap_model_for_generation(
            tr.model_wrapped,
            tr.accelerator,
            gather_deepspeed3_params=tr.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=tr.args.gradient_checkpointing_kwargs,
        ) as model:
            model.eval()
            texts, gen = generate_completions(
                model, tr.processing_class, val.images, val.messages, max_new_tokens=self.max_new_tokens,
                do_sample=False, batch_size=self.val_batch_size, device=tr.accelerator.device,
            )
            if was_training:
                model.train()
        if not tr.accelerator.is_main_process:
            return None
        results = [self.val_scorer.score(img, gt, [t])[0] for img, gt, t in zip(val.images, val.masks, texts)]
        metrics = {
            "val/mean_iou": float(np.mean([r.iou for r in results])),
            "val/reward": float(np.mean([r.reward for r in results])),
            "val/parse_failure_rate": float(np.mean([not r.parsed_ok for r in results])),
            "val/gen_tokens_per_s": gen["new_tokens"] / max(gen["seconds"], 1e-9),
        }
        self.val_history.append({"step": step, **metrics})
        w = self.writer()
        if w is not None:
            for k, v in metrics.items():
                w.add_scalar(k, v, step)
            tiles = [
                draw_overlay(img, r.mask, gt, r.prompts, caption=f"IoU {r.iou:.2f}")
                for img, gt, r in zip(val.images, val.masks, results)
            ]
            w.add_image("val/overlays", image_grid(tiles, columns=4, tile_size=280), step, dataformats="HWC")
            w.add_text("val/completions", "\n\n---\n\n".join(
                f"**Q:** {q}  \n**IoU** {r.iou:.3f}\n\n```\n{t[:2000]}\n```"
                for q, t, r in zip(val.questions[:4], texts[:4], results[:4])), step)
            w.flush()
        return metrics


@functools.cache
def _callback_class() -> type:
    from transformers import TrainerCallback

    return type("T2SCallback", (T2SCallback, TrainerCallback), {})


def make_callback(monitor: RewardMonitor, val: ValData | None, scorer: Scorer, **options: Any) -> T2SCallback:
    """A :class:`T2SCallback` that is a transformers ``TrainerCallback`` (``options``: its keywords)."""
    return _callback_class()(monitor, val, scorer, **options)


__all__ = ["RewardMonitor", "T2SCallback", "ValData", "make_callback"]
