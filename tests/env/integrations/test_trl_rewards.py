"""Module-level trl reward functions (t2s_env.integrations.trl.t2s_iou / t2s_json /
t2s_think): called exactly as trl's GRPOTrainer calls reward functions, configured like the
verl adapter, and resolved by trl's own script from their dotted paths (issue 19 item 5)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from t2s_env.errors import ConfigError
from t2s_env.instructions import format_completion
from t2s_env.integrations import trl as trl_rewards
from t2s_env.integrations.refs import GroundTruthRef
from t2s_env.integrations.trl import configure, make_reward_functions, t2s_iou, t2s_json, t2s_think
from t2s_env.prompt import GeometricPrompt
from t2s_env.scoring import Scorer

SIZE = 64
DOTTED = [f"t2s_env.integrations.trl.{name}" for name in ("t2s_iou", "t2s_json", "t2s_think")]


@pytest.fixture(autouse=True)
def unconfigured(monkeypatch):
    """Every test starts with nothing configured and no T2S_* variables."""
    monkeypatch.setattr(trl_rewards, "_CONFIGURED", None)
    for name in ("T2S_REWARD_OPTIONS", "T2S_SCORER_URL", "T2S_SEGMENTER"):
        monkeypatch.delenv(name, raising=False)


def _answer(x1, y1, x2, y2) -> str:
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return format_completion([GeometricPrompt(box=(x1, y1, x2, y2), positive_points=((cx, cy), (cx + 1, cy + 1)))])


def _scene():
    image = np.random.default_rng(3).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    gt = np.zeros((SIZE, SIZE), bool)
    gt[0:32, 0:32] = True
    return image, gt


# trl's conversational completions: one assistant turn per completion
COMPLETIONS = [
    [{"role": "assistant", "content": _answer(0, 0, 32, 32)}],  # the GT box
    [{"role": "assistant", "content": _answer(32, 32, 64, 64)}],  # disjoint
    [{"role": "assistant", "content": "I cannot tell."}],  # no answer
]


def grpo_call(func, completions, **columns):
    """The call of trl 1.16's GRPOTrainer._calculate_rewards: every column repeated per
    completion, plus the trainer's own keywords."""
    n = len(completions)
    return func(
        prompts=[[{"role": "user", "content": "q"}]] * n,
        completions=completions,
        completion_ids=[[1, 2, 3]] * n,
        trainer_state=object(),
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
        **columns,
    )


def test_image_and_gt_mask_columns_score_as_make_reward_functions():
    configure(segmenter="box")
    image, gt = _scene()
    n = len(COMPLETIONS)
    columns = {"image": [Image.fromarray(image)] * n, "gt_mask": [gt] * n, "image_id": ["a"] * n}
    got = [grpo_call(f, COMPLETIONS, **columns) for f in (t2s_iou, t2s_json, t2s_think)]
    want = [grpo_call(f, COMPLETIONS, **columns) for f in make_reward_functions(Scorer("box"))]
    assert got == want == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    assert all(isinstance(v, float) for v in got[0])


def test_ground_truth_reference_columns(tmp_path):
    configure(segmenter="box")
    image, gt = _scene()
    Image.fromarray(image).save(tmp_path / "im.png")
    Image.fromarray(gt.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    ref = GroundTruthRef(image=str(tmp_path / "im.png"), mask=str(tmp_path / "mask.png"), image_size=None).to_json()
    n = len(COMPLETIONS)
    assert grpo_call(t2s_iou, COMPLETIONS, ground_truth=[ref] * n) == [1.0, 0.0, 0.0]
    # the rows `t2s data export verl` writes carry the reference in reward_model
    verl_rows = [{"style": "rule", "ground_truth": ref}] * n
    assert grpo_call(t2s_iou, COMPLETIONS, reward_model=verl_rows) == [1.0, 0.0, 0.0]
    assert grpo_call(t2s_json, COMPLETIONS, ground_truth=[ref] * n) == [1.0, 1.0, 0.0]


def test_options_from_the_environment_and_configure(monkeypatch):
    image, gt = _scene()
    # 0-1000 units: (0, 0, 500, 500) is the GT's top-left quarter of the 64² image
    rel = [[{"role": "assistant", "content": _answer(0, 0, 500, 500)}]]
    columns = {"image": [image], "gt_mask": [gt]}
    monkeypatch.setenv("T2S_REWARD_OPTIONS", json.dumps({"segmenter": "box", "coord_frame": "rel1000"}))
    assert grpo_call(t2s_iou, rel, **columns) == [1.0]
    configure(segmenter="box")  # replaces the variable: pixels, so the box covers the whole image
    assert grpo_call(t2s_iou, rel, **columns) == [pytest.approx(1024 / 4096)]


@pytest.mark.parametrize(
    "value, match",
    [("{segmenter: box}", "T2S_REWARD_OPTIONS='{segmenter: box}' is not JSON"),
     ('["box"]', "must hold a JSON object"),
     ('{"segmenterr": "box"}', "unknown Think2Seg reward option 'segmenterr'")],
)
def test_bad_options_are_one_line(monkeypatch, value, match):
    monkeypatch.setenv("T2S_REWARD_OPTIONS", value)
    with pytest.raises(ConfigError, match=match):
        grpo_call(t2s_json, COMPLETIONS[:1])


def test_configure_refuses_unknown_options():
    with pytest.raises(ConfigError, match="unknown Think2Seg reward option 'coord_fram'"):
        configure(coord_fram="rel1000")


def test_missing_columns_are_named():
    configure(segmenter="box")
    with pytest.raises(ConfigError, match="needs a 'ground_truth' column .*; the rows have image, question$"):
        grpo_call(t2s_iou, COMPLETIONS[:1], image=[np.zeros((SIZE, SIZE, 3), np.uint8)], question=["q"])
    with pytest.raises(ConfigError, match="reward_model column must hold"):
        grpo_call(t2s_iou, COMPLETIONS[:1], reward_model=["not a dict"])


def test_trl_grpo_script_resolves_the_dotted_paths(monkeypatch, tmp_path):
    """trl/scripts/grpo.py's own resolution of --reward_funcs, up to building the trainer."""
    import datasets
    import trl
    from trl import DatasetMixtureConfig, GRPOConfig, ModelConfig
    from trl.scripts import grpo

    seen = {}

    class Built(Exception):
        pass

    class RecordingTrainer:
        def __init__(self, model, reward_funcs, **kwargs):
            seen["reward_funcs"] = reward_funcs
            raise Built

    monkeypatch.setattr(trl, "GRPOTrainer", RecordingTrainer)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"train": []})
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the cwd first
    args = grpo.GRPOScriptArguments(dataset_name="rows", reward_funcs=DOTTED)
    config = GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False)
    with pytest.raises(Built):
        grpo.main(args, config, ModelConfig(model_name_or_path="unused"), DatasetMixtureConfig())
    assert seen["reward_funcs"] == [t2s_iou, t2s_json, t2s_think]
