"""verl and EasyR1: exported rows, and the reward functions called exactly as their reward
managers call them.

verl (pins transformers<5.11, needs ray) and EasyR1 cannot be installed beside this
project, so the calls below are faithful replicas of their code, read from
volcengine/verl (verl/workers/reward_manager/naive.py and batch.py, the loader
get_custom_reward_fn in verl/trainer/ppo/reward.py, RLHFDataset._build_messages in
verl/utils/dataset/rl_dataset.py) and hiyouga/EasyR1 (verl/workers/reward/function.py,
verl/utils/dataset.py): the same keyword names, argument types (numpy object arrays,
mutated extra_info dicts), loading by file path, and result handling.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from t2s_env.datasets import make_dataset
from t2s_env.errors import DatasetError, T2SError
from t2s_env.instructions import build_messages, format_completion
from t2s_env.integrations import backend as backend_mod
from t2s_env.integrations.export import export, read_rows
from t2s_env.integrations.refs import GroundTruthRef
from t2s_env.observation import load_framed
from t2s_env.prompt import GeometricPrompt
from t2s_env.scoring import Scorer
from t2s_env.segmenters import BoxSegmenter
from think2seg.scripts import loadtest

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # protocol frame of these tests (the rows record it in their references)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.datagen import write_rectangle_dataset

    base = tmp_path_factory.mktemp("export")
    root = base / "rects"
    write_rectangle_dataset(root, split="train", n=4, n_empty=1, seed=5, size=96)
    out = base / "train.parquet"
    n = export("verl", "earthreason:train", str(root), out, image_size=SIZE, question="random", seed=0)
    assert n == 4
    return root, read_rows(out)


def completions_for(gt: np.ndarray) -> list[str]:
    ys, xs = np.nonzero(gt)
    if len(xs):
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    else:
        box = (1.0, 1.0, 9.0, 9.0)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    exact = format_completion([GeometricPrompt(box=box, positive_points=((cx, cy), (cx + 1, cy)))], think="here")
    half = format_completion([GeometricPrompt(box=(box[0], box[1], cx, box[3]), positive_points=((box[0] + 1, cy), (box[0] + 2, cy)))])
    return [exact, half, "<think> none </think>\n<answer>```json[]```</answer>", "no idea", '<answer>[{"bbox_2d": [1,2,3]}]</answer>']


def load_by_path(module_name: str, path: str):
    """verl's get_custom_reward_fn / EasyR1's FunctionRewardManager: import a file by path."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def verl_reward_fn(name: str, reward_kwargs: dict):
    import t2s_env.integrations.verl as mod

    raw_fn = getattr(load_by_path("custom_module", mod.__file__), name)

    def wrapped(*args, **kwargs):  # verl's _call_with_kwargs: config kwargs take precedence
        return raw_fn(*args, **{**kwargs, **reward_kwargs})

    return wrapped


def expected_scores(root: Path, rows, completions_per_row) -> list[list]:
    ds = make_dataset("earthreason:train", root=root, question="all")
    by_id = {s.image_id: s for s in ds}  # one mask per image
    out = []
    for row, comps in zip(rows, completions_per_row):
        ref = json.loads(row["reward_model"]["ground_truth"])
        framed = load_framed(by_id[ref["sample_id"]], SIZE)
        out.append(Scorer("box").score(framed.image, framed.gt_mask, comps))
    return out


def test_exported_rows_are_verl_rl_dataset_rows(exported):
    root, rows = exported
    ds = make_dataset("earthreason:train", root=root, question="all")
    for i, row in enumerate(rows):
        assert set(row) == {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
        assert row["data_source"] == "think2seg/earthreason" and row["reward_model"]["style"] == "rule"
        info = row["extra_info"]
        assert info["index"] == i and info["split"] == "train"
        # verl's RLHFDataset._build_messages turns the string content into content parts at
        # <image>; the result is the upstream messages (an empty leading text part aside).
        messages = [dict(m) for m in row["prompt"]]
        for m in messages:
            parts = []
            for segment in re.split("(<image>|<video>)", m["content"]):
                parts.append({"type": "image"} if segment == "<image>" else {"type": "text", "text": segment})
            m["content"] = [p for p in parts if p != {"type": "text", "text": ""}]
        assert messages == build_messages(info["question"])
        # The image is the protocol frame, losslessly; the reference resolves to its mask.
        sample = next(s for s in ds if s.image_id == info["image_id"] and s.question == info["question"])
        framed = load_framed(sample, SIZE)
        png = Image.open(io.BytesIO(row["images"][0]["bytes"]))
        assert np.array_equal(np.asarray(png), framed.image)
        ref = GroundTruthRef.from_any(row["reward_model"]["ground_truth"])
        assert ref.image_size == SIZE and Path(ref.mask).is_file() and Path(ref.image).is_file()
        assert ref.mask.endswith(f"labels/{info['image_id']}.png")
    # --question random is upstream's one seeded question per image
    assert len({r["extra_info"]["image_id"] for r in rows}) == len(rows) == 4


def test_verl_naive_reward_manager_call(exported):
    """NaiveRewardManager.__call__: per sample, keyword call, extra_info mutated with
    num_turns, a dict result read through result["score"], the rest into reward_extra_info."""
    root, rows = exported
    compute_score = verl_reward_fn("compute_score", {"segmenter": "box"})
    scores, reward_extra_info = [], defaultdict(list)
    comps = []
    for row in rows:
        ref = GroundTruthRef.from_any(row["reward_model"]["ground_truth"])
        comps.append(completions_for(np.asarray(Image.open(ref.mask).resize((SIZE, SIZE), Image.NEAREST)) > 0))
    want = expected_scores(root, rows, comps)
    for row, row_comps in zip(rows, comps):
        for response_str in row_comps:
            data_item = {"reward_model": row["reward_model"], "data_source": row["data_source"],
                         "extra_info": dict(row["extra_info"])}
            extra_info = data_item.get("extra_info", {})
            extra_info["num_turns"] = None
            score = compute_score(
                data_source=data_item["data_source"],
                solution_str=response_str,
                ground_truth=data_item["reward_model"]["ground_truth"],
                extra_info=extra_info,
            )
            assert isinstance(score, dict)
            scores.append(score["score"])
            for key, value in score.items():
                reward_extra_info[key].append(value)
    flat = [r for group in want for r in group]
    assert scores == [r.reward for r in flat]
    assert reward_extra_info["iou"] == [r.reward_components["iou"] for r in flat]
    assert max(scores) == 4.0 and min(scores) == 0.0
    assert all(isinstance(v, float) for vals in reward_extra_info.values() for v in vals)


def test_verl_batch_reward_manager_call_encodes_each_image_once(exported, monkeypatch):
    """BatchRewardManager.verify: data_sources and extra_infos are numpy object arrays, the
    extra_info dicts get rollout_reward_scores, and the reward_kwargs are passed through."""
    root, rows = exported
    encoded = []

    class CountingBox(BoxSegmenter):
        def encode_batch(self, images):
            encoded.extend(im.shape for im in images)
            return super().encode_batch(images)

    monkeypatch.setattr(backend_mod, "_BACKENDS", {})
    counting = CountingBox()
    monkeypatch.setattr("t2s_env.segmenters.make_segmenter", lambda spec, **kw: counting)
    compute_score = verl_reward_fn("compute_score_batch", {"segmenter": "counting-box"})
    # a GRPO batch: each row repeated G times, interleaved as verl's rollout.n repeat does
    g = 5
    batch = [row for row in rows for _ in range(g)]
    responses = []
    for row in rows:
        ref = GroundTruthRef.from_any(row["reward_model"]["ground_truth"])
        responses.extend(completions_for(np.asarray(Image.open(ref.mask).resize((SIZE, SIZE), Image.NEAREST)) > 0))
    ground_truths = [item["reward_model"].get("ground_truth", None) for item in batch]
    data_sources = np.array([item["data_source"] for item in batch], dtype=object)
    rollout_reward_scores = np.array([{} for _ in batch], dtype=object)
    extras = np.array([dict(item["extra_info"]) for item in batch], dtype=object)
    for i in range(len(batch)):
        extras[i]["rollout_reward_scores"] = rollout_reward_scores[i]
    scores = compute_score(data_sources=data_sources, solution_strs=responses, ground_truths=ground_truths,
                           extra_infos=extras)
    assert len(scores) == len(batch) and all(isinstance(s, dict) for s in scores)
    rewards = [s["score"] if isinstance(s, dict) else s for s in scores]
    want = expected_scores(root, rows, [responses[k * g : (k + 1) * g] for k in range(len(rows))])
    assert rewards == [r.reward for group in want for r in group]
    # One encoding per distinct image (every group has a parsable box answer), each exactly once.
    assert len(encoded) == len(rows)
    # per-sample calls through the same backend reuse the embeddings (LRU): no new encodes
    single = verl_reward_fn("compute_score", {"segmenter": "counting-box"})
    single(data_source=batch[0]["data_source"], solution_str=responses[0], ground_truth=ground_truths[0], extra_info={})
    assert len(encoded) == len(rows)


def test_easyr1_batch_and_sequential_reward_functions(exported):
    import t2s_env.integrations.easyr1 as mod

    root, rows = exported
    module = load_by_path("custom_reward_fn", mod.__file__)
    reward_fn = partial(module.compute_score, **{"segmenter": "box"})
    responses, truths = [], []
    for row in rows:
        ref = GroundTruthRef.from_any(row["reward_model"]["ground_truth"])
        comps = completions_for(np.asarray(Image.open(ref.mask).resize((SIZE, SIZE), Image.NEAREST)) > 0)
        responses.extend(comps)
        truths.extend([row["reward_model"]["ground_truth"]] * len(comps))
    reward_inputs = [{"response": r, "response_length": len(r), "ground_truth": t} for r, t in zip(responses, truths)]
    scores = reward_fn(reward_inputs)
    reward_metrics = defaultdict(list)
    for score in scores:
        for key, value in score.items():
            reward_metrics[key].append(value)
    want = [r for group in expected_scores(root, rows, [responses[k * 5 : (k + 1) * 5] for k in range(len(rows))]) for r in group]
    assert reward_metrics["overall"] == [r.reward for r in want]
    assert reward_metrics["accuracy"] == [r.reward_components["iou"] for r in want]
    assert reward_metrics["format"] == [(r.reward_components["json"] + r.reward_components["think"]) / 2 for r in want]
    assert all(0.0 <= f <= 1.0 for f in reward_metrics["format"])
    sequential = partial(module.compute_score_sequential, segmenter="box")
    assert sequential(reward_inputs[0]) == scores[0]


def test_easyr1_export_rows(exported, tmp_path):
    root, _ = exported
    out = tmp_path / "easyr1.parquet"
    assert export("easyr1", "earthreason:train", str(root), out, image_size=SIZE) == 4
    rows = read_rows(out)
    assert set(rows[0]) == {"prompt", "answer", "images"}
    # EasyR1's RLHFDataset: split the prompt string at <image> into one user turn
    parts = []
    for i, content in enumerate(rows[0]["prompt"].split("<image>")):
        if i != 0:
            parts.append({"type": "image"})
        if content:
            parts.append({"type": "text", "text": content})
    question = json.loads(rows[0]["answer"])["sample_id"]
    assert parts[0] == {"type": "image"} and parts[1]["text"].startswith('Please find "')
    assert question and GroundTruthRef.from_any(rows[0]["answer"]).image_size == SIZE


def test_scoring_through_the_service_matches_local(exported):
    root, rows = exported
    proc, url = loadtest.spawn_server("--segmenter", "box")
    try:
        truths = [r["reward_model"]["ground_truth"] for r in rows for _ in range(3)]
        sols = ["<think>a</think>\n<answer>```json[]```</answer>", "x",
                format_completion([GeometricPrompt(box=(2.0, 2.0, 40.0, 30.0), positive_points=((5.0, 5.0), (6.0, 6.0)))])] * len(rows)
        local = verl_reward_fn("compute_score_batch", {"segmenter": "box"})
        remote = verl_reward_fn("compute_score_batch", {"remote": url})
        args = dict(data_sources=["think2seg/earthreason"] * len(sols), solution_strs=sols, ground_truths=truths, extra_infos=None)
        assert remote(**args) == local(**args)
    finally:
        loadtest.stop_server(proc)
    # the server is gone: a clear error after bounded retries, never a reward of 0
    dead = verl_reward_fn("compute_score", {"remote": url, "retries": 1, "timeout": 1})
    with pytest.raises(T2SError, match="failed after 2 attempts"):
        dead(data_source="x", solution_str=sols[0], ground_truth=truths[0], extra_info=None)


def test_missing_files_and_bad_references_are_named(exported, tmp_path):
    root, rows = exported
    compute_score = verl_reward_fn("compute_score", {"segmenter": "box"})
    ref = json.loads(rows[0]["reward_model"]["ground_truth"])
    gone = dict(ref, mask=str(tmp_path / "labels" / "missing.png"))
    with pytest.raises(DatasetError, match=r"mask file .*missing\.png .*does not exist"):
        compute_score(data_source="x", solution_str="x", ground_truth=json.dumps(gone), extra_info={})
    with pytest.raises(DatasetError, match="not a Think2Seg reference"):
        compute_score(data_source="x", solution_str="x", ground_truth="42 apples", extra_info={})
    with pytest.raises(DatasetError, match=r"parquet file .*nope\.parquet does not exist"):
        read_rows(tmp_path / "nope.parquet")


def test_cli_export_errors_are_one_line(tmp_path, exported, capsys):
    from t2s_env.cli import main

    root, _ = exported
    cases = [
        (["--root", str(root), "--out", str(tmp_path / "no" / "x.parquet")], "output folder"),
        (["--root", str(tmp_path / "absent"), "--out", str(tmp_path / "x.parquet")], "absent"),
        (["--root", str(root), "--out", str(tmp_path / "x.csv")], "must end in .parquet"),
    ]
    for argv, needle in cases:
        assert main(["data", "export", "verl", "--dataset", "earthreason:train", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("t2s: error: ") and needle in lines[0]
    assert not list(tmp_path.glob("*.parquet*"))  # nothing half-written
    argv = ["data", "export", "verl", "--dataset", "earthreason:train", "--root", str(root),
            "--out", str(tmp_path / "ok.parquet"), "--question", "all", "--image-size", "32"]
    assert main(argv) == 0 and "12 verl rows" in capsys.readouterr().out  # 4 images x 3 questions


def test_library_never_imports_the_server_stack():
    code = ("import sys, t2s_env, t2s_env.remote, t2s_env.integrations.verl, t2s_env.integrations.easyr1, "
            "t2s_env.integrations.export; bad = [m for m in ('fastapi', 'uvicorn', 'starlette', 'think2seg') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_verl_recipe_matches_spec_section_6():
    cfg = yaml.safe_load((REPO / "scripts/configs/verl_grpo_3b.yaml").read_text())
    assert cfg["defaults"] == ["ppo_trainer", "_self_"]
    actor, rollout = cfg["actor_rollout_ref"]["actor"], cfg["actor_rollout_ref"]["rollout"]
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg["algorithm"]["adv_estimator"] == "grpo" and rollout["n"] == 16
    assert actor["optim"]["lr"] == 1e-6 and actor["kl_loss_coef"] == 0.001 and actor["kl_loss_type"] == "low_var_kl"
    assert rollout["temperature"] == 1.0 and cfg["data"]["max_response_length"] == 1024
    assert cfg["trainer"]["n_gpus_per_node"] == 2 and cfg["trainer"]["total_epochs"] == 5
    # 2 GPUs x one group of 16 x grad-accum 2 = 4 prompts per optimizer step, one update per batch
    assert cfg["data"]["train_batch_size"] == actor["ppo_mini_batch_size"] == 4 and actor["ppo_epochs"] == 1
    import t2s_env.integrations.verl as mod

    assert cfg["reward_model"]["reward_manager"] == "batch"
    assert callable(getattr(mod, cfg["custom_reward_function"]["name"]))
    assert cfg["custom_reward_function"]["reward_kwargs"]["segmenter"] == "sam2:small"
