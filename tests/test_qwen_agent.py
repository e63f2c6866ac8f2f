"""QwenPrompter on a tiny random Qwen2.5-VL built offline (no hub access)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from think2seg.agents import make_agent  # noqa: E402
from think2seg.agents.hf_vlm.loading import pin_image_size, processed_size  # noqa: E402
from think2seg.agents.hf_vlm.tiny import answer_tokens  # noqa: E402
from t2s_env import CheckpointError, SYSTEM_PROMPT, T2SError, Think2SegEnv, build_messages  # noqa: E402
from tests.conftest import TINY_QWEN_SIZE  # noqa: E402
from tests.datagen import write_rectangle_dataset  # noqa: E402

SIZE = TINY_QWEN_SIZE


@pytest.fixture(scope="module")
def small_rects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rects112")
    write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=0, size=SIZE)
    return root


@pytest.fixture(scope="module")
def agent(tiny_qwen_dir):
    return make_agent(f"qwen:{tiny_qwen_dir}", max_new_tokens=24, image_size=SIZE, batch_size=4)


def test_tiny_model_round_trips_offline(tiny_qwen_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir)
    assert model.config.model_type == "qwen2_5_vl"
    assert model.num_parameters() < 1_000_000
    text = proc.apply_chat_template(build_messages("q?"), add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text and text.endswith("<|im_start|>assistant\n")
    batch = proc(text=[text], images=[np.zeros((SIZE, SIZE, 3), np.uint8)], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    n_pad = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_pad == 16
    # every answer token decodes to a protocol answer that the strict parser accepts
    from t2s_env import parse_completion

    assert all(parse_completion(a).ok for a in answer_tokens(SIZE, pixels=True))


def test_840_frame_is_not_resized(tiny_qwen_dir):
    """SPEC §5: 840 = 30·28, so 60×60 patches merged 2×2 into 900 visual tokens."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen_dir)
    pin_image_size(proc, 840)
    assert processed_size(proc, 840, 840) == (840, 840)
    text = proc.apply_chat_template(build_messages("q?"), add_generation_prompt=True, tokenize=False)
    batch = proc(text=[text], images=[np.zeros((840, 840, 3), np.uint8)], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 60, 60]]
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == 900


def test_defaults_follow_upstream_evaluation(agent):
    from think2seg.agents.hf_vlm import QwenPrompter
    import inspect

    params = inspect.signature(QwenPrompter.__init__).parameters
    assert params["max_new_tokens"].default == 2048
    assert params["do_sample"].default is False
    assert QwenPrompter.arg_name == "model"
    cfg = agent.config()
    assert cfg["name"] == "qwen" and cfg["do_sample"] is False and cfg["temperature"] is None
    assert agent.label.startswith("qwen:")
    assert agent.processor.tokenizer.padding_side == "left"


def test_zero_shot_completions_are_scored_by_the_env(agent, small_rects):
    env = Think2SegEnv(dataset_spec="earthreason", root=str(small_rects), split="val", segmenter="box", image_size=SIZE)
    observations, infos = [], []
    for i in range(len(env.dataset)):
        obs, info = env.reset(options={"index": i})
        observations.append(obs)
        infos.append(info)
    completions = agent.act_batch(observations, infos)
    assert len(completions) == 4 and all(isinstance(c, str) for c in completions)
    assert agent.last_stats["new_tokens"] > 0
    for i, text in enumerate(completions):
        env.reset(options={"index": i})
        _, reward, terminated, truncated, info = env.step(text)
        assert terminated and not truncated
        assert 0.0 <= reward <= 4.0
        assert set(info["reward_components"]) == {"iou", "json", "think"}


def test_left_padded_batches_match_single_prompts(agent, small_rects):
    """Greedy batched generation equals one-by-one generation (left padding is right)."""
    env = Think2SegEnv(dataset_spec="earthreason", root=str(small_rects), split="val", segmenter="box", image_size=SIZE)
    obs, infos = [], []
    for i, q in enumerate(["short?", "a much longer question about where ships could be repaired in this harbour?"]):
        o, info = env.reset(options={"index": i})
        o = {**o, "question": q}
        obs.append(o)
        infos.append({"messages": build_messages(q)})
    batched = agent.act_batch(obs, infos)
    single = [agent.act(o, i) for o, i in zip(obs, infos)]
    assert batched == single


def test_messages_default_to_the_upstream_prompt(agent, monkeypatch):
    seen = []
    original = agent.processor.apply_chat_template

    def spy(messages, **kw):
        seen.append(messages)
        return original(messages, **kw)

    monkeypatch.setattr(agent.processor, "apply_chat_template", spy)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    agent.act({"image": image, "question": "where is the dock?"}, {})
    assert seen[0][0]["content"][0]["text"] == SYSTEM_PROMPT
    assert seen[0][1]["content"][0] == {"type": "image"}
    assert seen[0][1]["content"][1]["text"] == build_messages("where is the dock?")[1]["content"][1]["text"]


def test_sampling_is_an_option(tiny_qwen_dir):
    from think2seg.agents.hf_vlm.generation import generation_kwargs
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_qwen_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir)
    greedy = generation_kwargs(proc.tokenizer, model, 2048, False)
    assert greedy["do_sample"] is False and greedy["max_new_tokens"] == 2048
    sampled = generation_kwargs(proc.tokenizer, model, 64, True, temperature=0.7, top_p=0.9)
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9
    assert model.config.image_token_id in sampled["suppress_tokens"]


def test_lora_adapter_directory_loads_on_its_base(tiny_qwen_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    out = tmp_path / "adapter"
    peft_model.save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_qwen_dir).save_pretrained(out)
    agent = make_agent(f"qwen:{out}", max_new_tokens=4, image_size=SIZE)
    assert agent.model.config.model_type == "qwen2_5_vl"
    assert not hasattr(agent.model, "peft_config")  # merged
    assert isinstance(agent.act({"image": np.zeros((SIZE, SIZE, 3), np.uint8), "question": "q?"}, {}), str)


# -- clear errors for bad checkpoints ------------------------------------------------------

def test_missing_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        make_agent(f"qwen:{tmp_path / 'nowhere'}")


def test_model_dir_without_processor(tiny_qwen_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny_qwen_dir / f, bare / f)
    with pytest.raises(CheckpointError, match="tokenizer.*image processor|processor=") as exc:
        make_agent(f"qwen:{bare}")
    assert "\n" not in str(exc.value)
    # with only the tokenizer present, the message names the image processor
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_qwen_dir / f, bare / f)
    with pytest.raises(CheckpointError, match="image processor"):
        make_agent(f"qwen:{bare}")
    # ... and processor= fixes it
    agent = make_agent(f"qwen:{bare}", processor=str(tiny_qwen_dir), max_new_tokens=2, image_size=SIZE)
    assert agent.processor.image_processor is not None


def test_not_a_qwen25vl_model(tiny_qwen_dir, tmp_path):
    other = tmp_path / "llama"
    shutil.copytree(tiny_qwen_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not Qwen2.5-VL"):
        make_agent(f"qwen:{other}")


def test_dir_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(T2SError, match="config.json"):
        make_agent(f"qwen:{tmp_path / 'empty'}")
