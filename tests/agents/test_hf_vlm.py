"""hf-vlm:<path> for every family (Qwen2.5-VL, Qwen3-VL, InternVL3-hf, LLaVA-1.5) on tiny
random models built offline: agents scored by the env in their frame, two GRPO steps per
family, one-line errors for bad checkpoints and frame mismatches; and qwen:<path>, the
Qwen2.5-VL alias, with upstream's evaluation defaults (no hub access)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from think2seg.agents import make_agent  # noqa: E402
from think2seg.agents.hf_vlm.families import FAMILIES, get_family  # noqa: E402
from think2seg.agents.hf_vlm.loading import pin_image_size, processed_size  # noqa: E402
from think2seg.agents.hf_vlm.tiny import TINY_FAMILIES, answer_tokens, build_tiny  # noqa: E402
from t2s_env import (CheckpointError, ConfigError, SYSTEM_PROMPT, T2SError, Think2SegEnv, build_messages,  # noqa: E402
                     parse_completion)
from tests.conftest import TINY_QWEN_SIZE  # noqa: E402
from tests.datagen import write_rectangle_dataset  # noqa: E402

SIZE = TINY_QWEN_SIZE
#: families built here (Qwen2.5-VL comes from conftest's session fixture)
OTHERS = ("qwen3_vl", "internvl", "llava")
#: image side each tiny agent is given (InternVL's tiny tiles are 32 px: 64 -> 4 tiles + thumbnail)
AGENT_SIZE = {"qwen2_5_vl": SIZE, "qwen3_vl": SIZE, "internvl": 64, "llava": None}


@pytest.fixture(scope="module")
def tiny_dirs(tiny_qwen_dir, tmp_path_factory) -> dict[str, Path]:
    """One tiny model per family, built once per session."""
    base = tmp_path_factory.getbasetemp()
    dirs = {"qwen2_5_vl": tiny_qwen_dir}
    for fam in OTHERS:
        dirs[fam] = build_tiny(fam, base / f"tiny-{fam}-{SIZE}", image_size=SIZE)
    return dirs


@pytest.fixture(scope="module")
def rects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hfvlm_rects")
    write_rectangle_dataset(root, split="train", n=4, n_empty=1, seed=1, size=SIZE)
    write_rectangle_dataset(root, split="val", n=3, n_empty=1, seed=0, size=SIZE)
    return root


def agent_for(tiny_dirs, family, **kw):
    kw.setdefault("max_new_tokens", 12)
    return make_agent(f"hf-vlm:{tiny_dirs[family]}", image_size=AGENT_SIZE[family], batch_size=4, **kw)


def test_families_have_their_frames_and_image_sides():
    assert {f: FAMILIES[f].coord_frame for f in FAMILIES} == {
        "qwen2_5_vl": "abs", "qwen3_vl": "rel1000", "internvl": "rel1000", "llava": "rel1"}
    assert FAMILIES["qwen2_5_vl"].image_size == 840 and FAMILIES["qwen2_5_vl"].keep_size
    assert FAMILIES["internvl"].image_size == 896 and FAMILIES["llava"].image_size is None
    assert set(TINY_FAMILIES) == set(FAMILIES)
    with pytest.raises(ConfigError, match="unknown model family 'gemma'.*qwen3_vl"):
        get_family("gemma")


def test_tiny_answer_tokens_are_protocol_answers_in_each_frame():
    for extent, frame, decimals in ((1000, "rel1000", 0), (1, "rel1", 3)):
        answers = answer_tokens(extent, decimals)
        parsed = [parse_completion(a, image_size=(SIZE, SIZE), coord_frame=frame) for a in answers]
        assert all(p.ok for p in parsed)
        # the full-frame cell covers the whole image once converted to pixels
        assert parsed[-2].prompts[0].box == pytest.approx((0, 0, SIZE, SIZE))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", *OTHERS])
def test_each_family_is_scored_by_the_env_in_its_frame(family, tiny_dirs, rects):
    agent = agent_for(tiny_dirs, family)
    assert agent.family.name == family and agent.coord_frame == FAMILIES[family].coord_frame
    cfg = agent.config()
    assert cfg["name"] == "hf-vlm" and cfg["family"] == family and cfg["coord_frame"] == agent.coord_frame
    assert agent.processor.tokenizer.padding_side == "left"
    env = Think2SegEnv(root=str(rects), split="val", segmenter="box", image_size=SIZE, coord_frame=agent.coord_frame)
    observations, infos = zip(*(env.reset(options={"index": i}) for i in range(3)))
    assert all(i["coord_frame"] == agent.coord_frame for i in infos)
    completions = agent.act_batch(list(observations), list(infos))
    assert len(completions) == 3 and all(isinstance(c, str) for c in completions)
    assert agent.last_stats["new_tokens"] > 0
    # greedy batches equal one-by-one generation (left padding is right for the family)
    assert agent.act(observations[1], infos[1]) == completions[1]
    for i, text in enumerate(completions):
        env.reset(options={"index": i})
        _, reward, terminated, _, info = env.step(text)
        assert terminated and 0.0 <= reward <= 4.0 and info["coord_frame"] == agent.coord_frame
    # an answer of the family's own vocabulary, in its frame, lands on the right pixels
    frame = FAMILIES[family].coord_frame
    full = answer_tokens(*{"abs": (SIZE, 0), "rel1000": (1000, 0), "rel1": (1, 3)}[frame])[-2]
    env.reset(options={"index": 2})
    assert env.step(full)[4]["prompts"][0]["bbox_2d"] == [0, 0, SIZE, SIZE]


def test_qwen_alias_is_hf_vlm_restricted_to_qwen25(tiny_dirs):
    qwen = make_agent(f"qwen:{tiny_dirs['qwen2_5_vl']}", max_new_tokens=2, image_size=SIZE)
    assert qwen.config()["name"] == "qwen" and qwen.family.name == "qwen2_5_vl" and qwen.coord_frame == "abs"
    with pytest.raises(CheckpointError, match="not Qwen2.5-VL") as exc:
        make_agent(f"qwen:{tiny_dirs['qwen3_vl']}")
    assert str(tiny_dirs["qwen3_vl"]) in str(exc.value)



class _RecordingProcessor:
    """A processor that keeps what each call returned (the batches the model was given)."""

    def __init__(self, processor):
        self._processor, self.batches = processor, []

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, **kw):
        self.batches.append(self._processor(**kw))
        return self.batches[-1]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_generation_takes_a_list_of_images_per_conversation(family, tiny_dirs):
    """A later turn shows another image (the refine protocol's overlay): conversations
    with several images batch with one-image ones, and equal one-by-one generation."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from think2seg.agents.hf_vlm.generation import generate_completions

    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[family]).eval()
    processor = _RecordingProcessor(AutoProcessor.from_pretrained(tiny_dirs[family]))
    rng = np.random.default_rng(0)
    frame, overlay, other = (rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3))
    two_turns = build_messages("where is the dock?") + [
        {"role": "assistant", "content": [{"type": "text", "text": answer_tokens(1000)[0]}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "The mask so far, in green."}]}]
    one_turn = build_messages("a much longer question about where ships could be repaired?")
    images = [[frame, overlay], other, [frame]]
    messages = [two_turns, one_turn, one_turn]
    batched, _ = generate_completions(model, processor, images, messages, max_new_tokens=6, batch_size=3)
    image_tokens = (processor.batches[0]["input_ids"] == model.config.image_token_id).sum(1).tolist()
    assert image_tokens[0] == 2 * image_tokens[1] and image_tokens[1] == image_tokens[2] > 0
    single = [generate_completions(model, processor, [im], [m], max_new_tokens=6)[0][0]
              for im, m in zip(images, messages)]
    assert batched == single
    with pytest.raises(ValueError, match=r"conversation 1 has 2 image parts but 1 images"):
        generate_completions(model, processor, [frame, [overlay]], [one_turn, two_turns], max_new_tokens=2)

@pytest.mark.slow
def test_lora_adapter_loads_on_its_base(tiny_dirs, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_dirs["llava"])
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=FAMILIES["llava"].lora_target))
    out = tmp_path / "llava-lora"
    peft_model.save_pretrained(out)
    assert not (out / "preprocessor_config.json").exists()  # the processor comes from the base
    agent = make_agent(f"hf-vlm:{out}", max_new_tokens=3)
    assert agent.family.name == "llava" and not hasattr(agent.model, "peft_config")
    assert isinstance(agent.act({"image": np.zeros((SIZE, SIZE, 3), np.uint8), "question": "q?"}, {}), str)


# -- one-line errors naming the path -----------------------------------------------------------

def _copy(src: Path, dst: Path, files) -> Path:
    dst.mkdir()
    for f in files:
        shutil.copy(src / f, dst / f)
    return dst


def test_unknown_family_names_the_path(tiny_dirs, tmp_path):
    other = tmp_path / "gemma"
    shutil.copytree(tiny_dirs["llava"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "gemma3"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as exc:
        make_agent(f"hf-vlm:{other}")
    msg = str(exc.value)
    assert str(other) in msg and "'gemma3'" in msg and "qwen3_vl" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="unknown model family"):
        make_agent(f"hf-vlm:{tiny_dirs['llava']}", family="gemma")
    with pytest.raises(ConfigError, match="InternVL3 model, but family=llava"):
        make_agent(f"hf-vlm:{tiny_dirs['internvl']}", family="llava", max_new_tokens=2)
    with pytest.raises(ConfigError, match="image_size must be an integer"):
        make_agent(f"hf-vlm:{tiny_dirs['llava']}", image_size="big")
    assert make_agent(f"hf-vlm:{tiny_dirs['llava']}", image_size="none", max_new_tokens=2).image_size is None


def test_model_dir_without_weights_or_processor(tiny_dirs, tmp_path):
    src = tiny_dirs["qwen3_vl"]
    no_weights = _copy(src, tmp_path / "noweights", ["config.json", "tokenizer.json", "tokenizer_config.json",
                                                      "processor_config.json"])
    with pytest.raises(CheckpointError, match="has no weights") as exc:
        make_agent(f"hf-vlm:{no_weights}")
    assert str(no_weights) in str(exc.value) and "\n" not in str(exc.value)
    bare = _copy(src, tmp_path / "bare", ["config.json", "generation_config.json", "model.safetensors"])
    with pytest.raises(CheckpointError, match="tokenizer.*image processor") as exc:
        make_agent(f"hf-vlm:{bare}")
    assert str(bare) in str(exc.value) and "Qwen/Qwen3-VL" in str(exc.value)
    agent = make_agent(f"hf-vlm:{bare}", processor=str(src), max_new_tokens=2, image_size=SIZE)
    assert agent.family.name == "qwen3_vl"
    with pytest.raises(T2SError, match="config.json"):
        make_agent(f"hf-vlm:{_copy(src, tmp_path / 'empty', [])}")


@pytest.mark.slow
def test_bench_refuses_a_frame_mismatch_unless_overridden(tiny_dirs, rects, tmp_path, capsys):
    from t2s_env.cli import main

    agents = tmp_path / "agents.yaml"
    agents.write_text(json.dumps([{"name": f"hf-vlm:{tiny_dirs['qwen3_vl']}", "max_new_tokens": 8}]))
    common = ["bench", "--dataset", "earthreason:val", "--root", str(rects), "--segmenter", "box", "--no-tensorboard",
              "--no-progress", "--no-leaderboard", "--agent-config", str(agents), "--protocol-option", f"image_size={SIZE}"]
    rc = main([*common, "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.splitlines()[-1]  # (after transformers' loading bar)
    assert rc == 2 and err.startswith("t2s: error: ")
    assert str(tiny_dirs["qwen3_vl"]) in err and "rel1000" in err and "coord_frame" in err
    assert not (tmp_path / "a" / "runs").exists() or not any((tmp_path / "a" / "runs").iterdir())
    # in the family's frame it runs, and the agent's frame is recorded with the protocol's
    assert main([*common, "--out", str(tmp_path / "b"), "--protocol-option", "coord_frame=rel1000", "--limit", "2"]) == 0
    import yaml

    (run,) = (tmp_path / "b" / "runs").iterdir()
    cfg = yaml.safe_load((run / "run.yaml").read_text())
    assert cfg["protocol"]["coord_frame"] == "rel1000" and cfg["agent"]["config"]["coord_frame"] == "rel1000"


# -- GRPO for every family ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_grpo_steps_per_family(family, tiny_dirs, rects, tmp_path):
    import think2seg.scripts.train_grpo as tg

    recipe = str(Path(tg.__file__).parent / "configs" / "grpo_tiny_cpu.yaml")
    cfg = tg.load_config(["--config", recipe, f"family={family}", f"model_name_or_path=tiny:{tiny_dirs[family]}",
                          "dataset=earthreason:train", "val_dataset=earthreason:val", f"root={rects}",
                          f"output_dir={tmp_path / 'run'}", "max_steps=2", "save_steps=10", "val_steps=2",
                          "val_samples=2", "val_max_new_tokens=6", "max_completion_length=12", "beta=0.0"])
    run = tg.build_run(cfg)
    frame = FAMILIES[family].coord_frame
    assert cfg.script.coord_frame == frame and run.scorer.coord_frame == frame
    assert cfg.script.prompt_variant == ("bbox+2pos" if frame == "abs" else f"bbox+2pos@{frame}")
    seen = []
    iou = run.trainer.reward_funcs[0]

    def spy(prompts=None, completions=(), **kw):
        out = iou(prompts=prompts, completions=completions, **kw)
        seen.append((prompts, out))
        return out

    spy.__name__ = iou.__name__
    run.trainer.reward_funcs[0] = spy
    run.trainer.train()
    assert run.trainer.state.global_step == 2
    assert len(seen) == 2 and all(0.0 <= r <= 1.0 for _, rewards in seen for r in rewards)
    if frame != "abs":  # the policy was asked in its frame's wording
        assert "from 0 to 1" in str(seen[0][0][0])
    assert run.callback.val_history and "val/mean_iou" in run.callback.val_history[-1]


def test_training_refuses_a_frame_mismatch_unless_allowed(tiny_dirs, rects, tmp_path):
    import think2seg.scripts.train_grpo as tg

    recipe = str(Path(tg.__file__).parent / "configs" / "grpo_tiny_cpu.yaml")
    argv = ["--config", recipe, "family=qwen3_vl", f"model_name_or_path=tiny:{tiny_dirs['qwen3_vl']}",
            "dataset=earthreason:train", f"root={rects}", "val_steps=0", "coord_frame=abs"]
    cfg = tg.load_config([*argv, f"output_dir={tmp_path / 'a'}"])
    with pytest.raises(ConfigError) as exc:
        tg.build_run(cfg)
    msg = str(exc.value)
    assert str(tiny_dirs["qwen3_vl"]) in msg and "rel1000" in msg and "allow_frame_mismatch" in msg
    cfg = tg.load_config([*argv, f"output_dir={tmp_path / 'b'}", "allow_frame_mismatch=true"])
    assert tg.build_run(cfg).scorer.coord_frame == "abs"
    # the family must match the checkpoint
    cfg = tg.load_config([*argv[:1], recipe, "family=llava", f"model_name_or_path={tiny_dirs['internvl']}",
                          *argv[4:6], f"output_dir={tmp_path / 'c'}"])
    with pytest.raises(ConfigError, match="InternVL3 model but family=llava"):
        tg.build_run(cfg)


# -- recipes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, model, family, size", [
    ("grpo_qwen3vl_2b_lora_1gpu", "Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", 840),
    ("grpo_qwen3vl_4b", "Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", 840),
    ("grpo_internvl3_2b", "OpenGVLab/InternVL3-2B-hf", "internvl", 896),
    ("grpo_llava15_7b", "llava-hf/llava-1.5-7b-hf", "llava", 840),
])
def test_family_recipes_load(name, model, family, size, monkeypatch):
    import transformers.training_args

    import think2seg.scripts.train_grpo as tg

    # bf16 recipes parse as on a GPU machine (transformers refuses bf16 on a CPU-only one)
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    cfg = tg.load_config(["--config", str(Path(tg.__file__).parent / "configs" / f"{name}.yaml")])
    t = cfg.training
    assert cfg.model.model_name_or_path == model and cfg.script.family == family and cfg.script.image_size == size
    assert (t.per_device_train_batch_size * t.gradient_accumulation_steps) % t.num_generations == 0
    assert t.reward_weights == [2.0, 1.0, 1.0] and t.beta == 0.001 and cfg.script.segmenter == "sam2:small"
    assert cfg.script.coord_frame is None  # the family's frame, resolved against the checkpoint
    assert cfg.model.use_peft == name.endswith("lora_1gpu")


def test_tiny_dir_serves_every_family(tiny_dirs, tmp_path):
    from think2seg.agents.hf_vlm.tiny import tiny_dir_for

    assert tiny_dir_for("llava", tmp_path / "new") == tmp_path / "new"
    assert tiny_dir_for("llava", tiny_dirs["llava"]) == tiny_dirs["llava"]
    held = tiny_dirs["qwen2_5_vl"]
    assert tiny_dir_for("internvl", held) == held.with_name(held.name + "-internvl")



def test_tiny_dir_is_reused_only_for_the_same_family_and_seed(tmp_path):
    import hashlib

    def built(path):
        weights = path / "model.safetensors"
        return (json.loads((path / "config.json").read_text())["model_type"],
                hashlib.sha256(weights.read_bytes()).hexdigest(), weights.stat().st_mtime_ns)

    path = tmp_path / "tiny"
    build_tiny("qwen2_5_vl", path, image_size=56)
    qwen_seed0 = built(path)
    build_tiny("qwen3_vl", path, image_size=56)
    assert built(path)[0] == "qwen3_vl"
    build_tiny("qwen2_5_vl", path, image_size=56)  # the directory now holds Qwen3-VL: rebuilt
    assert built(path)[:2] == qwen_seed0[:2]
    build_tiny("qwen2_5_vl", path, image_size=56, seed=1)  # another seed, other weights
    seed1 = built(path)
    assert seed1[0] == "qwen2_5_vl" and seed1[1] != qwen_seed0[1]
    assert build_tiny("qwen2_5_vl", path, image_size=56, seed=1) == path and built(path) == seed1  # reused
    assert json.loads((path / "tiny_model.json").read_text())["family"] == "qwen2_5_vl"


def test_tiny_builder_command_line_builds_every_family(tmp_path, capsys):
    from think2seg.agents.hf_vlm.tiny import main

    assert main([str(tmp_path / "llava"), "--family", "llava", "--image-size", "56"]) == 0
    assert json.loads((tmp_path / "llava" / "config.json").read_text())["model_type"] == "llava"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "odd"), "--image-size", "100"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and "--image-size 100" in err and "multiple of 28" in err
    assert not (tmp_path / "odd").exists()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_agents_and_scripts_import_no_private_names():
    """No module reaches into another's private names (scripts/train_grpo.py imported
    agents.qwen.loading._is_local, sam3_text hf_vlm.tiny._tokenizer, hf_vlm.tiny qwen.tiny._corpus)."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    offenders = []
    for path in sorted(p for folder in ("agents", "scripts") for p in (repo / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        ours = set()  # names bound to this project's modules and objects
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for alias in node.names:
                    if _private(alias.name):
                        offenders.append(f"{path.relative_to(repo)}:{node.lineno} imports {alias.name}")
                    elif node.level or (node.module or "").startswith(("think2seg", "t2s_env")):
                        ours.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                ours.update(a.asname or a.name for a in node.names if a.name.startswith(("think2seg", "t2s_env")))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                    and _private(node.attr)):
                offenders.append(f"{path.relative_to(repo)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not offenders, offenders

# -- qwen:<path>: the Qwen2.5-VL alias (QwenPrompter) ------------------------------------------

@pytest.fixture(scope="module")
def small_rects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rects112")
    write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=0, size=SIZE)
    return root


@pytest.fixture(scope="module")
def qwen_agent(tiny_qwen_dir):
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


def test_defaults_follow_upstream_evaluation(qwen_agent):
    from think2seg.agents.hf_vlm import QwenPrompter
    import inspect

    params = inspect.signature(QwenPrompter.__init__).parameters
    assert params["max_new_tokens"].default == 2048
    assert params["do_sample"].default is False
    assert QwenPrompter.arg_name == "model"
    cfg = qwen_agent.config()
    assert cfg["name"] == "qwen" and cfg["do_sample"] is False and cfg["temperature"] is None
    assert qwen_agent.label.startswith("qwen:")
    assert qwen_agent.processor.tokenizer.padding_side == "left"


def test_qwen_run_record_keeps_its_identity(qwen_agent, tiny_qwen_dir):
    """What run_identity hashes of a qwen:<path> run is what it was before the alias moved
    into hf_vlm (leaderboard rows keep their identity)."""
    from think2seg.agents import agent_source

    assert qwen_agent.config() == {
        "name": "qwen", "model": str(tiny_qwen_dir), "family": "qwen2_5_vl", "coord_frame": "abs",
        "max_new_tokens": 24, "do_sample": False, "temperature": None, "top_p": None, "batch_size": 4,
        "dtype": "bfloat16" if qwen_agent.device.type == "cuda" else "float32", "image_size": SIZE,
        "prompt_variant": "bbox+2pos"}
    assert qwen_agent.label == f"qwen:{tiny_qwen_dir}"
    assert agent_source(f"qwen:{tiny_qwen_dir}")["import_path"] == "think2seg.agents.hf_vlm:QwenPrompter"

def test_zero_shot_completions_are_scored_by_the_env(qwen_agent, small_rects):
    env = Think2SegEnv(dataset_spec="earthreason", root=str(small_rects), split="val", segmenter="box", image_size=SIZE)
    observations, infos = [], []
    for i in range(len(env.dataset)):
        obs, info = env.reset(options={"index": i})
        observations.append(obs)
        infos.append(info)
    completions = qwen_agent.act_batch(observations, infos)
    assert len(completions) == 4 and all(isinstance(c, str) for c in completions)
    assert qwen_agent.last_stats["new_tokens"] > 0
    for i, text in enumerate(completions):
        env.reset(options={"index": i})
        _, reward, terminated, truncated, info = env.step(text)
        assert terminated and not truncated
        assert 0.0 <= reward <= 4.0
        assert set(info["reward_components"]) == {"iou", "json", "think"}


def test_left_padded_batches_match_single_prompts(qwen_agent, small_rects):
    """Greedy batched generation equals one-by-one generation (left padding is right)."""
    env = Think2SegEnv(dataset_spec="earthreason", root=str(small_rects), split="val", segmenter="box", image_size=SIZE)
    obs, infos = [], []
    for i, q in enumerate(["short?", "a much longer question about where ships could be repaired in this harbour?"]):
        o, info = env.reset(options={"index": i})
        o = {**o, "question": q}
        obs.append(o)
        infos.append({"messages": build_messages(q)})
    batched = qwen_agent.act_batch(obs, infos)
    single = [qwen_agent.act(o, i) for o, i in zip(obs, infos)]
    assert batched == single


def test_messages_default_to_the_upstream_prompt(qwen_agent, monkeypatch):
    seen = []
    original = qwen_agent.processor.apply_chat_template

    def spy(messages, **kw):
        seen.append(messages)
        return original(messages, **kw)

    monkeypatch.setattr(qwen_agent.processor, "apply_chat_template", spy)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    qwen_agent.act({"image": image, "question": "where is the dock?"}, {})
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
