"""Runs verl's own code on Think2Seg rows and prints what verl made of them, as JSON.

tests/env/integrations/test_integrations.py starts this file in a subprocess, with the folder that
scripts/install.sh fills with verl 0.9.1 and what its reward code imports
(constraints/verl-test.txt, ``--no-deps``). It runs in its own process because importing
verl calls ``logging.basicConfig`` and imports ray: neither may leak into the test process.
The test compares every number printed here with the in-process ``Scorer``.

    python tests/verl_reward_checks.py VERL_DIR CASES.json  ->  one JSON object on stdout

CASES.json: ``{"recipe": <yaml path>, "overrides": [Hydra overrides], "parquet": <rows of
t2s data export verl>, "responses": [[completion, ...] for each row]}``.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

# A real encoder's latency, so that concurrent reward calls overlap as they do on SAM2.
ENCODE_LATENCY_S = 0.05


def byte_tokenizer_dir(where: Path) -> str:
    """A Hugging Face tokenizer whose decode(encode(text)) is ``text`` for any string
    (byte-level BPE without merges), saved where verl's ``hf_tokenizer`` loads it from."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {sym: i for i, sym in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(where)
    return str(where)


def rollout_batch(tokenizer: Any, rows: list[dict], responses: list[list[str]]):
    """The DataProto verl's rollout hands its reward code: left-padded prompts, right-padded
    responses ending in EOS, one attention mask over both, and the rows' non-tensor columns,
    each row repeated once per completion (as ``rollout.n`` does)."""
    import torch
    from verl import DataProto

    pad = tokenizer.pad_token_id
    items = [(row, text) for row, texts in zip(rows, responses) for text in texts]
    prompt_ids = [tokenizer.encode(row["extra_info"]["question"], add_special_tokens=False) for row, _ in items]
    response_ids = [tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id] for _, text in items]
    p_len, r_len = max(map(len, prompt_ids)), max(map(len, response_ids))
    prompts = torch.full((len(items), p_len), pad, dtype=torch.long)
    resp = torch.full((len(items), r_len), pad, dtype=torch.long)
    mask = torch.zeros((len(items), p_len + r_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        prompts[i, p_len - len(p):] = torch.tensor(p)
        resp[i, : len(r)] = torch.tensor(r)
        mask[i, p_len - len(p): p_len + len(r)] = 1
    non_tensors = {
        "data_source": np.array([row["data_source"] for row, _ in items], dtype=object),
        "reward_model": np.array([dict(row["reward_model"]) for row, _ in items], dtype=object),
        "extra_info": np.array([dict(row["extra_info"]) for row, _ in items], dtype=object),
    }
    batch = DataProto.from_dict(tensors={"prompts": prompts, "responses": resp, "attention_mask": mask},
                                non_tensors=non_tensors)
    return batch, [len(r) for r in response_ids]


def compose(recipe: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    path = Path(recipe).resolve()
    with initialize_config_dir(config_dir=str(path.parent), version_base=None):
        return hydra_compose(path.stem, overrides=overrides)


def recipe_report(config) -> dict[str, Any]:
    """What verl 0.9.1's trainer makes of the recipe's reward settings, what 0.7.1-0.8.0's
    would (their ``main`` first runs ``migrate_legacy_reward_impl``, shipped in 0.9.1), and
    the optimizer config verl builds from it (with any deprecation warning)."""
    from verl.experimental.reward_loop import migrate_legacy_reward_impl
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls
    from verl.utils.config import omega_conf_to_dataclass

    def seen_by_verl(cfg) -> dict[str, Any]:
        try:
            manager = resolve_reward_manager_cls(cfg)
            fn = get_custom_reward_fn(cfg)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
            return {"error": f"{type(exc).__name__}: {exc}"}
        # get_custom_reward_fn returns partial(_call_with_kwargs[_async], raw_fn, reward_kwargs)
        return {
            "manager": f"{manager.__module__}.{manager.__qualname__}",
            "custom_function": None if fn is None else f"{fn.args[0].__module__}.{fn.args[0].__name__}",
            "reward_kwargs": None if fn is None else dict(fn.args[1]),
        }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optim = omega_conf_to_dataclass(config.actor_rollout_ref.actor.optim)
    return {
        "v0.9.1": seen_by_verl(config),
        "v0.7.1-0.8.0": seen_by_verl(migrate_legacy_reward_impl(copy.deepcopy(config))),
        "lr_scheduler_type": optim.lr_scheduler_type,
        "deprecations": sorted({str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)}),
    }


def messages_report(rows: list[dict]) -> list[list[dict]]:
    """verl's ``RLHFDataset._build_messages`` on each row's prompt and images (the method
    reads only the four attributes given here), images shown as their sizes."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    dataset = SimpleNamespace(image_key="images", video_key="videos", audio_key="audios", processor=object())
    out = []
    for row in rows:
        messages = RLHFDataset._build_messages(dataset, copy.deepcopy(row), "prompt")
        for m in messages:
            m["content"] = [{"type": "image", "size": list(p["image"].size)} if p["type"] == "image" else p
                            for p in m["content"]]
        out.append(messages)
    return out


def count_encodes() -> list[int]:
    """Records how many images each encoder call of the reward backend's segmenters gets."""
    import t2s_env.segmenters as segmenters

    counted: list[int] = []
    real = segmenters.make_segmenter

    def make_counting(spec, **kw):
        seg = real(spec, **kw)
        inner = seg.encode_batch

        def encode_batch(images):
            counted.append(len(images))
            time.sleep(ENCODE_LATENCY_S)
            return inner(images)

        seg.encode_batch = encode_batch
        return seg

    segmenters.make_segmenter = make_counting
    return counted


def reward_loop_scores(config, batch) -> dict[str, Any]:
    """verl >= 0.7.1: a ``RewardLoopWorker`` (the Ray actor's class, run in this process)
    scores the batch as ``RewardLoopManager.compute_rm_score`` asks each worker to; the
    manager class then places each score on its response's last token."""
    from verl.experimental.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(config)
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    scores = [out["reward_score"] for out in outputs]
    rm_scores = type(worker.reward_manager).assemble_rm_scores(batch, scores)
    return {
        "manager": type(worker.reward_manager).__qualname__,
        "scores": scores,
        "extra": [out["reward_extra_info"] for out in outputs],
        "rm_scores": rm_scores.tolist(),
    }


def legacy_scores(config, tokenizer, batch, manager_name: str, fn_name: str) -> dict[str, Any]:
    """verl <= 0.7.0 (0.7.0 with reward_model.use_reward_loop=False): the trainer built a
    ``verl.workers.reward_manager`` class (still shipped, unused, in 0.9.1) around the
    custom function and called it on the batch with ``return_dict=True``."""
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import get_reward_manager_cls

    cfg = copy.deepcopy(config)
    cfg.reward.custom_reward_function.name = fn_name
    manager = get_reward_manager_cls(manager_name)(tokenizer=tokenizer, num_examine=0,
                                                   compute_score=get_custom_reward_fn(cfg), reward_fn_key="data_source")
    out = manager(copy.deepcopy(batch), return_dict=True)
    return {
        "manager": type(manager).__qualname__,
        "reward_tensor": out["reward_tensor"].tolist(),
        "reward_extra_info": {k: [float(v) for v in vals] for k, vals in out["reward_extra_info"].items()},
    }


def main(argv: list[str]) -> int:
    sys.path.append(argv[0])  # after the environment's own packages: verl's folder only adds
    cases = json.loads(Path(argv[1]).read_text())
    from t2s_env.integrations.export import read_rows

    rows = read_rows(cases["parquet"])
    counted = count_encodes()
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = byte_tokenizer_dir(Path(tmp) / "tokenizer")
        config = compose(cases["recipe"], [*cases["overrides"], f"actor_rollout_ref.model.path={tok_dir}"])
        from verl.utils import hf_tokenizer

        tokenizer = hf_tokenizer(tok_dir)
        report: dict[str, Any] = {"recipe": recipe_report(config), "messages": messages_report(rows)}
        batch, lengths = rollout_batch(tokenizer, rows, cases["responses"])
        report["response_lengths"] = lengths
        report["decoded"] = [tokenizer.decode(ids[:n], skip_special_tokens=True)
                             for ids, n in zip(batch.batch["responses"], lengths)]
        report["reward_loop"] = reward_loop_scores(config, batch)
        report["reward_loop"]["encodes"] = list(counted)
        report["legacy_naive"] = legacy_scores(config, tokenizer, batch, "naive", "compute_score")
        report["legacy_batch"] = legacy_scores(config, tokenizer, batch, "batch", "compute_score_batch")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
