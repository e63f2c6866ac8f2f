"""verl and EasyR1: exported rows, and the reward functions called exactly as those
libraries call them.

verl: with verl 0.9.1 installed beside the environment (scripts/install.sh puts it and what
its reward code imports in ``<venv>/verl-0.9.1``; T2S_VERL_PATH=DIR points elsewhere),
tests/verl_reward_checks.py runs verl's own code in a subprocess: Hydra composes the recipe
over verl's ``ppo_trainer``, verl's ``RewardLoopWorker`` and ``NaiveRewardManager`` (verl
>= 0.7.1) and the ``verl.workers.reward_manager`` naive and batch managers (the trainers of
verl <= 0.7.0) score a rollout ``DataProto``, and ``RLHFDataset._build_messages`` reads the
exported rows. Without that folder those tests skip, naming it.

EasyR1 is not on PyPI, so its calls are replicas read from hiyouga/EasyR1's source:
verl/workers/reward/function.py at commit 46c6c210fddc939f81cf638f7d41d180ffdb17b7
(Sequential/BatchFunctionRewardManager, ``worker.reward.reward_type``) and as changed by PR
#558 (merged 2025-11-13: ``AutoRewardManager`` reads ``REWARD_TYPE``, default "batch", from
the loaded module; the config key is gone); the examples/reward_function/*.py of 46c6c210
show the input and output shapes. Both load the file by path as ``custom_reward_fn`` and
bind ``reward_function_kwargs`` with ``functools.partial``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from t2s_env.datasets import make_dataset
from t2s_env.errors import ConfigError, DatasetError, T2SError
from t2s_env.instructions import build_messages, format_completion
from t2s_env.integrations import easyr1 as easyr1_mod
from t2s_env.integrations import verl as verl_mod
from t2s_env.integrations.export import export, read_rows
from t2s_env.integrations.refs import GroundTruthRef
from t2s_env.framing import load_framed
from t2s_env.prompt import GeometricPrompt
from t2s_env.scoring import Scorer
from t2s_env.segmenters import BoxSegmenter
from think2seg.scripts import loadtest

REPO = Path(__file__).resolve().parents[3]
SIZE = 64  # protocol frame of these tests (the rows record it in their references)
VERL_DIR = Path(os.environ.get("T2S_VERL_PATH") or Path(sys.prefix) / "verl-0.9.1")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.datagen import write_rectangle_dataset

    base = tmp_path_factory.mktemp("export")
    root = base / "rects"
    write_rectangle_dataset(root, split="train", n=4, n_empty=1, seed=5, size=96)
    out = base / "train.parquet"
    n = export("verl", "earthreason:train", str(root), out, image_size=SIZE, question="random", seed=0)
    assert n == 4
    return root, read_rows(out), out


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


def row_completions(rows) -> list[list[str]]:
    """Per row: an exact box, half a box, an empty answer and two unparsable ones."""
    out = []
    for row in rows:
        ref = GroundTruthRef.from_any(row["reward_model"]["ground_truth"])
        out.append(completions_for(np.asarray(Image.open(ref.mask).resize((SIZE, SIZE), Image.NEAREST)) > 0))
    return out


def expected_scores(root: Path, rows, completions_per_row) -> list:
    """The in-process Scorer's results, flattened in row order."""
    ds = make_dataset("earthreason:train", root=root, question="all")
    by_id = {s.image_id: s for s in ds}  # one mask per image
    out = []
    for row, comps in zip(rows, completions_per_row):
        ref = json.loads(row["reward_model"]["ground_truth"])
        framed = load_framed(by_id[ref["sample_id"]], SIZE)
        out.extend(Scorer("box").score(framed.image, framed.gt_mask, comps))
    return out


def load_by_path(module_name: str, path: str):
    """EasyR1's reward managers: import the reward file by path under ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def counting_segmenter(monkeypatch) -> list[int]:
    """Every segmenter the reward backend builds from now on is a box segmenter that records
    how many images each encoder call gets (give each test its own segmenter spec, so that
    the backend, cached per options, is built afresh)."""
    encoded: list[int] = []

    class CountingBox(BoxSegmenter):
        def encode_batch(self, images):
            encoded.append(len(images))
            return super().encode_batch(images)

    monkeypatch.setattr("t2s_env.segmenters.make_segmenter", lambda spec, **kw: CountingBox())
    return encoded


def test_exported_rows_are_verl_rl_dataset_rows(exported):
    root, rows, _ = exported
    ds = make_dataset("earthreason:train", root=root, question="all")
    for i, row in enumerate(rows):
        assert set(row) == {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
        assert row["data_source"] == "think2seg/earthreason" and row["reward_model"]["style"] == "rule"
        info = row["extra_info"]
        assert info["index"] == i and info["split"] == "train"
        # the string content with <image> first (verl's own reading: test_verl_reads_the_rows)
        assert row["prompt"][1]["content"].startswith("<image>")
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


# -- verl 0.9.1 itself ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def verl_report(exported, tmp_path_factory):
    """What verl 0.9.1's own code computes on the exported rows (tests/verl_reward_checks.py,
    one subprocess for all verl tests), and the in-process Scorer's results to compare."""
    if not (VERL_DIR / "verl" / "__init__.py").is_file():
        pytest.skip(f"verl 0.9.1 is not installed in {VERL_DIR}: scripts/install.sh installs it there "
                    "(constraints/verl-test.txt); T2S_VERL_PATH=DIR names another folder")
    root, rows, parquet = exported
    responses = row_completions(rows)
    cases = tmp_path_factory.mktemp("verl") / "cases.json"
    cases.write_text(json.dumps({
        "recipe": str(REPO / "scripts/configs/verl_grpo_3b.yaml"),
        # score in the worker with the box segmenter instead of a server with SAM2
        "overrides": ["data.train_files=x.parquet", "data.val_files=x.parquet",
                      "~reward.custom_reward_function.reward_kwargs.remote",
                      "reward.custom_reward_function.reward_kwargs.segmenter=box"],
        "parquet": str(parquet),
        "responses": responses,
    }))
    proc = subprocess.run([sys.executable, str(REPO / "tests/verl_reward_checks.py"), str(VERL_DIR), str(cases)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), responses, expected_scores(root, rows, responses)


def components(result) -> dict[str, float]:
    return {"score": result.reward, **result.reward_components, "parsed": float(result.parsed_ok)}


@pytest.mark.slow
def test_verl_reads_the_recipe_reward_settings(verl_report):
    """verl 0.9.1 reads reward settings under ``reward:`` only (the old top-level keys are
    ignored: our function was never called), and 0.7.1-0.8.0 move the old ones there, where
    ``batch`` is not a registered manager ("Unknown reward manager: batch")."""
    report, _, _ = verl_report
    recipe = yaml.safe_load((REPO / "scripts/configs/verl_grpo_3b.yaml").read_text())
    kwargs = dict(recipe["reward"]["custom_reward_function"]["reward_kwargs"])
    del kwargs["remote"]
    kwargs["segmenter"] = "box"
    for version in ("v0.9.1", "v0.7.1-0.8.0"):
        seen = report["recipe"][version]
        assert seen == {
            "manager": "verl.experimental.reward_loop.reward_manager.naive.NaiveRewardManager",
            "custom_function": "t2s_env.integrations.verl.compute_score_async",
            "reward_kwargs": kwargs,
        }, version
    # the optimizer section as verl builds it: cosine, under its current (undeprecated) name
    assert report["recipe"]["lr_scheduler_type"] == "cosine" and report["recipe"]["deprecations"] == []


@pytest.mark.slow
def test_verl_reads_the_rows(verl_report, exported):
    """RLHFDataset._build_messages of verl 0.9.1 turns each exported prompt into the upstream
    messages, the row's image in place of <image>."""
    report, _, _ = verl_report
    _, rows, _ = exported
    for row, messages in zip(rows, report["messages"]):
        want = build_messages(row["extra_info"]["question"])
        want[1]["content"][0] = {"type": "image", "size": [SIZE, SIZE]}
        assert messages == want


@pytest.mark.slow
def test_verl_reward_loop_scores_equal_the_scorer_and_encode_each_image_once(verl_report):
    """verl >= 0.7.1: its RewardLoopWorker awaits compute_score_async for every completion at
    once; the rewards and components equal the in-process Scorer's, the reward sits on each
    response's last token, and each image is encoded once although the calls overlap."""
    report, responses, want = verl_report
    assert report["decoded"] == [c for comps in responses for c in comps]  # the tokenizer is lossless
    loop = report["reward_loop"]
    assert loop["manager"] == "NaiveRewardManager"
    assert loop["scores"] == [r.reward for r in want]
    assert loop["extra"] == [components(r) for r in want]
    assert max(loop["scores"]) == 4.0 and min(loop["scores"]) == 0.0
    for row, n, r in zip(loop["rm_scores"], report["response_lengths"], want):
        assert row[n - 1] == pytest.approx(r.reward, rel=1e-6) and sum(map(abs, row)) == abs(row[n - 1])
    assert sum(loop["encodes"]) == len(responses)  # four images, one encoding each


@pytest.mark.slow
def test_verl_legacy_reward_managers(verl_report):
    """verl <= 0.7.0: its naive manager with compute_score and its batch manager with
    compute_score_batch give the Scorer's rewards, and log the components."""
    report, _, want = verl_report
    for case in ("legacy_naive", "legacy_batch"):
        out = report[case]
        rewards = [sum(row) for row in out["reward_tensor"]]
        assert rewards == pytest.approx([r.reward for r in want], rel=1e-6), case
        assert out["reward_extra_info"] == {k: [components(r)[k] for r in want] for k in components(want[0])}, case
    assert report["legacy_batch"]["manager"] == "BatchRewardManager"


# -- the adapters without verl ---------------------------------------------------------------


def test_compute_score_async_scores_concurrent_calls_in_batches(exported, monkeypatch):
    """Calls that overlap, as verl's reward loop makes them, are scored in few batches,
    each image encoded once, with the same results as compute_score."""
    root, rows, _ = exported
    encoded = counting_segmenter(monkeypatch)
    responses = row_completions(rows)
    options = {"segmenter": "counting-box-async"}

    async def all_at_once():
        calls = [verl_mod.compute_score_async(data_source=row["data_source"], solution_str=text,
                                              ground_truth=row["reward_model"]["ground_truth"],
                                              extra_info=dict(row["extra_info"]), **options)
                 for row, comps in zip(rows, responses) for text in comps]
        return await asyncio.gather(*calls)

    got = asyncio.run(all_at_once())
    want = expected_scores(root, rows, responses)
    assert got == [components(r) for r in want]
    assert sum(encoded) == len(rows)  # every row has a parsable box; one encoding per image
    # a second event loop (a new verl step or worker) works and reuses the embeddings
    assert asyncio.run(all_at_once()) == got and sum(encoded) == len(rows)


def test_compute_score_async_gives_each_caller_the_error(exported):
    """A reference that cannot be resolved fails every call of its batch with the error that
    names the file; a later batch on the same loop still scores."""
    _, rows, _ = exported
    gone = dict(json.loads(rows[0]["reward_model"]["ground_truth"]), mask="/nonexistent/labels/missing.png")

    async def run():
        bad = [verl_mod.compute_score_async("x", "no idea", json.dumps(gone), segmenter="box") for _ in range(3)]
        errors = await asyncio.gather(*bad, return_exceptions=True)
        good = await verl_mod.compute_score_async("x", "no idea", rows[0]["reward_model"]["ground_truth"], segmenter="box")
        return errors, good

    errors, good = asyncio.run(run())
    assert all(isinstance(e, DatasetError) and "missing.png" in str(e) for e in errors)
    assert good["score"] == 0.0


def test_adapters_pass_every_option_through(monkeypatch):
    """Each function hands its keyword options to score_references unchanged (coord_frame
    and any misspelt key included: the backend accepts or refuses them), except the
    keyword arguments verl >= 0.7.1 itself adds when a reward model is enabled."""
    seen: list[dict] = []

    def recording(solutions, truths, options):
        seen.append(dict(options))
        comps = {"iou": 0.5, "json": 1.0, "think": 0.0}
        return [SimpleNamespace(reward=2.0, reward_components=comps, parsed_ok=True) for _ in solutions]

    monkeypatch.setattr(verl_mod, "score_references", recording)
    monkeypatch.setattr(easyr1_mod, "score_references", recording)
    options = {"coord_frame": "rel1000", "segmenter": "box", "parser_modee": "lenient"}
    verl_extra = {"reward_router_address": "127.0.0.1:9", "reward_model_tokenizer": object()}
    verl_mod.compute_score("d", "s", "{}", None, **options, **verl_extra)
    verl_mod.compute_score_batch(["d"], ["s"], ["{}"], None, **options, **verl_extra)
    asyncio.run(verl_mod.compute_score_async("d", "s", "{}", None, **options, **verl_extra))
    easyr1_mod.compute_score([{"response": "s", "response_length": 1, "ground_truth": "{}"}], **options)
    easyr1_mod.compute_score_sequential({"response": "s", "response_length": 1, "ground_truth": "{}"}, **options)
    assert seen == [options] * 5


def test_scoring_through_the_service_matches_local(exported):
    _, rows, _ = exported
    proc, url = loadtest.spawn_server("--segmenter", "box")
    try:
        truths = [r["reward_model"]["ground_truth"] for r in rows for _ in range(3)]
        sols = ["<think>a</think>\n<answer>```json[]```</answer>", "x",
                format_completion([GeometricPrompt(box=(2.0, 2.0, 40.0, 30.0), positive_points=((5.0, 5.0), (6.0, 6.0)))])] * len(rows)
        args = dict(data_sources=["think2seg/earthreason"] * len(sols), solution_strs=sols, ground_truths=truths, extra_infos=None)
        local = verl_mod.compute_score_batch(**args, segmenter="box")
        assert verl_mod.compute_score_batch(**args, remote=url) == local

        async def concurrent():
            calls = [verl_mod.compute_score_async("d", s, t, None, remote=url) for s, t in zip(sols, truths)]
            return await asyncio.gather(*calls)

        assert asyncio.run(concurrent()) == local
    finally:
        loadtest.stop_server(proc)
    # the server is gone: a clear error after bounded retries, never a reward of 0
    with pytest.raises(T2SError, match="failed after 2 attempts"):
        verl_mod.compute_score(data_source="x", solution_str=sols[0], ground_truth=truths[0], extra_info=None,
                               remote=url, retries=1, timeout=1)


# -- EasyR1 (call shapes read from its source) ----------------------------------------------


def easyr1_inputs(rows) -> tuple[list[dict], list[list[str]]]:
    """``{"response", "response_length", "ground_truth"}`` per completion, as EasyR1 builds
    them (response_length counts tokens; the characters stand in)."""
    responses = row_completions(rows)
    inputs = [{"response": r, "response_length": len(r), "ground_truth": row["reward_model"]["ground_truth"]}
              for row, comps in zip(rows, responses) for r in comps]
    return inputs, responses


def easyr1_reward_fn(function_name: str, kwargs: dict):
    """EasyR1's AutoRewardManager.__init__ since PR #558: load the file by path, take the call
    form from its REWARD_TYPE (default "batch"), bind reward_function_kwargs."""
    module = load_by_path("custom_reward_fn", easyr1_mod.__file__)
    return getattr(module, "REWARD_TYPE", "batch"), partial(getattr(module, function_name), **kwargs)


def test_easyr1_auto_reward_manager_batch_call(exported):
    """EasyR1 since PR #558: the batch call (compute_reward_batch) of compute_score."""
    root, rows, _ = exported
    reward_type, reward_fn = easyr1_reward_fn("compute_score", {"segmenter": "box"})
    assert reward_type == "batch"
    inputs, responses = easyr1_inputs(rows)
    reward_metrics = defaultdict(list)
    for score in reward_fn(inputs):
        for key, value in score.items():
            reward_metrics[key].append(value)
    want = expected_scores(root, rows, responses)
    assert reward_metrics["overall"] == [r.reward for r in want]
    assert reward_metrics["accuracy"] == [r.reward_components["iou"] for r in want]
    assert reward_metrics["format"] == [(r.reward_components["json"] + r.reward_components["think"]) / 2 for r in want]
    assert all(0.0 <= f <= 1.0 for f in reward_metrics["format"])


def test_easyr1_sequential_function_in_batch_mode_names_the_fix(exported):
    """EasyR1 since PR #558 calls every function of the file with a list: the sequential one
    says so in one line instead of failing on a list index."""
    _, rows, _ = exported
    reward_type, reward_fn = easyr1_reward_fn("compute_score_sequential", {"segmenter": "box"})
    inputs, _ = easyr1_inputs(rows)
    assert reward_type == "batch"
    with pytest.raises(ConfigError, match=r"since PR #558 .*:compute_score$") as err:
        reward_fn(inputs)
    assert "\n" not in str(err.value)


def test_easyr1_before_pr_558_batch_and_sequential_calls(exported):
    """EasyR1 at 46c6c210 (reward_type=batch / sequential): BatchFunctionRewardManager calls
    compute_score with the list, SequentialFunctionRewardManager compute_score_sequential
    with each input; a sequential call of the batch function names the fix."""
    _, rows, _ = exported
    module = load_by_path("custom_reward_fn", easyr1_mod.__file__)
    inputs, _ = easyr1_inputs(rows)
    batch = partial(module.compute_score, segmenter="box")(inputs)
    sequential = partial(module.compute_score_sequential, segmenter="box")
    assert [sequential(inp) for inp in inputs] == batch
    with pytest.raises(ConfigError, match="reward_type=batch"):
        partial(module.compute_score, segmenter="box")(inputs[0])


def test_easyr1_export_rows(exported, tmp_path):
    root, _, _ = exported
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


def test_missing_files_and_bad_references_are_named(exported, tmp_path):
    _, rows, _ = exported
    compute_score = partial(verl_mod.compute_score, segmenter="box")
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

    root, _, _ = exported
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
    assert actor["optim"]["lr_scheduler_type"] == "cosine" and actor["optim"]["min_lr_ratio"] == 0.0
    assert rollout["temperature"] == 1.0 and cfg["data"]["max_response_length"] == 1024
    assert cfg["trainer"]["n_gpus_per_node"] == 2 and cfg["trainer"]["total_epochs"] == 5
    # 2 GPUs x one group of 16 x grad-accum 2 = 4 prompts per optimizer step, one update per batch
    assert cfg["data"]["train_batch_size"] == actor["ppo_mini_batch_size"] == 4 and actor["ppo_epochs"] == 1
    # the reward settings verl >= 0.7.1 reads (what verl makes of them: test_verl_reads_the_recipe_reward_settings)
    reward = cfg["reward"]
    assert reward["reward_manager"] == {"source": "register", "name": "naive"}
    assert "reward_model" not in cfg and "custom_reward_function" not in cfg
    assert reward["custom_reward_function"]["path"] == "pkg://t2s_env.integrations.verl"
    assert callable(getattr(verl_mod, reward["custom_reward_function"]["name"]))
    assert reward["custom_reward_function"]["reward_kwargs"]["segmenter"] == "sam2:small"
