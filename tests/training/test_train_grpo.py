"""GRPO training with trl on the environment's reward: the tiny CPU recipe, offline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("trl")

from think2seg.agents.hf_vlm.callbacks import RewardMonitor  # noqa: E402
from think2seg.agents.hf_vlm.training import resolve_hub_model  # noqa: E402
from think2seg.scripts import train_grpo as tg  # noqa: E402
from t2s_env import ConfigError, Scorer, T2SError  # noqa: E402
from tests.conftest import TINY_QWEN_SIZE  # noqa: E402
from tests.datagen import write_rectangle_dataset  # noqa: E402

SIZE = TINY_QWEN_SIZE
CONFIGS = Path(tg.__file__).parent / "configs"
TINY = str(CONFIGS / "grpo_tiny_cpu.yaml")


@pytest.fixture(scope="module")
def er_root(tmp_path_factory) -> Path:
    """EarthReason layout: 6 train images (3 questions each, 1 empty), 2 val images."""
    root = tmp_path_factory.mktemp("er112")
    write_rectangle_dataset(root, split="train", n=6, n_empty=1, seed=1, size=SIZE)
    write_rectangle_dataset(root, split="val", n=2, n_empty=0, seed=2, size=SIZE)
    return root


def tiny_overrides(tiny_qwen_dir: Path, er_root: Path, out: Path, **extra) -> list[str]:
    values = {
        "model_name_or_path": f"tiny:{tiny_qwen_dir}",
        "dataset": "earthreason:train",
        "val_dataset": "earthreason:val",
        "root": str(er_root),
        "output_dir": str(out),
        "max_steps": 2,
        "save_steps": 1,
        "val_steps": 2,
        "val_samples": 2,
        "val_max_new_tokens": 16,
        "max_completion_length": 24,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def load(*argv: str) -> tg.Config:
    return tg.load_config(["--config", TINY, *argv])


@pytest.fixture
def gpu_bf16(monkeypatch):
    """The paper recipes train in bf16 on GPUs; transformers refuses bf16 on a CPU-only
    machine, so their parsing is checked as a GPU machine would see it."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)


# -- configuration --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("grpo_*.yaml")))
def test_recipes_load(name, gpu_bf16):
    cfg = tg.load_config(["--config", str(CONFIGS / f"{name}.yaml")])
    t = cfg.training
    assert cfg.script.image_size % 28 == 0
    assert (t.per_device_train_batch_size * t.gradient_accumulation_steps) % t.num_generations == 0
    assert t.num_train_epochs == 1 and cfg.epochs >= 1  # the epochs are materialised in the rows
    assert t.shuffle_dataset is False and t.reward_weights == [2.0, 1.0, 1.0] and t.report_to == ["tensorboard"]


def test_paper_recipes_follow_spec_section_6(gpu_bf16):
    b3 = tg.load_config(["--config", str(CONFIGS / "grpo_3b.yaml")])
    b7 = tg.load_config(["--config", str(CONFIGS / "grpo_7b.yaml")])
    for cfg, g in ((b3, 16), (b7, 12)):
        t, m = cfg.training, cfg.model
        assert t.num_generations == g and t.per_device_train_batch_size == g
        assert t.gradient_accumulation_steps == 2
        assert t.learning_rate == 1e-6 and t.lr_scheduler_type == "linear" and t.warmup_steps == 0
        assert t.beta == 0.001 and t.temperature == 1.0 and t.max_completion_length == 1024
        assert t.loss_type == "grpo" and t.scale_rewards == "group"
        assert t.bf16 and m.dtype == "bfloat16" and t.activation_checkpointing
        assert not m.use_peft and not cfg.script.freeze_vision
        assert cfg.script.segmenter == "sam2:small" and cfg.script.image_size == 840
    assert (b3.epochs, b7.epochs) == (5, 8)
    assert "3B" in b3.model.model_name_or_path and "7B" in b7.model.model_name_or_path
    lora = tg.load_config(["--config", str(CONFIGS / "grpo_3b_lora_1gpu.yaml")])
    assert lora.model.use_peft and lora.script.freeze_vision and lora.training.num_generations == 8


def test_cpu_recipe_pins_one_torch_thread():
    assert load().script.torch_threads == 1
    assert load("torch_threads=null").script.torch_threads is None
    assert load("--torch_threads", "2").script.torch_threads == 2


def test_overrides_both_syntaxes_are_type_checked():
    cfg = load("max_steps=7", "use_peft=true", "lora_target_modules=[q_proj,v_proj]",
               "segmenter_options.point_radius=4", "reward_weights=[3,1,1]", "root=/data/er", "val_dataset=null")
    assert cfg.training.max_steps == 7 and cfg.model.use_peft is True
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.script.segmenter_options == {"point_radius": 4} and cfg.training.reward_weights == [3.0, 1.0, 1.0]
    assert cfg.script.root == "/data/er" and cfg.script.val_dataset is None
    cfg = load("--max_steps", "8", "--use_peft", "--lora_target_modules", "q_proj", "v_proj", "--learning_rate", "1e-5")
    assert cfg.training.max_steps == 8 and cfg.model.use_peft is True and cfg.training.learning_rate == 1e-5
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj"]
    for argv, message in [
        (["max_stepz=3"], r"unknown key 'max_stepz' \(did you mean max_steps\?\)"),
        (["--max_stepz", "3"], r"unknown key 'max_stepz' \(did you mean max_steps\?\)"),
        (["max_steps=three"], "invalid int value: 'three'"),
        (["use_peft=3"], "use_peft must be true or false"),
        (["question_mode=sometimes"], "question_mode must be one of redraw, all, first, random"),
        (["num_generations=3"], "num_generations"),  # trl's own check: 4 completions per step
        (["reward_weights=[1,1]"], "reward_weights must be 3 finite numbers"),
        (["reward_weights=[.nan,1,1]"], "reward_weights must be 3 finite numbers"),
        (["num_train_epochs=1.5"], "num_train_epochs must be a whole number"),
        (["shuffle_dataset=true"], "shuffle_dataset must stay false"),
        (["image_size=100"], "multiple of 28"),
        (["torch_threads=0"], "torch_threads must be >= 1"),
        (["dtype=float64"], "dtype must be"),
        (["output_dir="], "output_dir is empty"),
        (["model_revision=v2"], "model_revision=v2 is not supported; download that revision"),
        (["load_in_4bit=true"], "load_in_4bit / load_in_8bit are not supported"),
        (["output_dir=null"], "output_dir is empty"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            load(*argv)
        assert "\n" not in str(info.value), argv


def test_unknown_yaml_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nlearning_rte: 1.0e-6\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'learning_rte' \(did you mean learning_rate\?\)"):
        tg.load_config(["--config", str(bad)])


def test_use_vllm_needs_vllm():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        assert load("use_vllm=true").training.use_vllm
    else:
        with pytest.raises(ConfigError, match="vllm"):
            load("use_vllm=true")


def test_config_mistakes_stop_before_anything_loads(tmp_path, monkeypatch, capsys):
    """A typo, a bad value or a broken recipe is one line, and no model, data or hub is touched."""
    from t2s_env.cli import main

    def touched(*a, **k):
        raise AssertionError("loaded something before the configuration was checked")

    for name in ("build_run", "resolve_model_path", "build_train_data", "resolve_resume"):
        monkeypatch.setattr(tg, name, touched)
    broken = tmp_path / "broken.yaml"
    broken.write_text("max_steps: 3\nlora_target_modules: [q_proj, v_proj\nseed: 1\n")
    modelless = tmp_path / "modelless.yaml"
    modelless.write_text("max_steps: 3\nuse_cpu: true\nbf16: false\n")
    for argv, message in [
        (["--config", TINY, "learning_rte=1e-5"], "unknown key 'learning_rte'"),
        (["--config", TINY, "--max_steps", "x"], "invalid int value: 'x'"),
        (["--config", str(broken)], "broken.yaml is not valid YAML (line 3"),
        ([], "no model: pass a recipe"),  # no --config: no default hub model to fetch
        (["max_steps=3"], "no model: pass a recipe"),
        (["--config", str(modelless)], "no model: pass a recipe"),
    ]:
        assert main(["train", "grpo", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("t2s: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "modelless.yaml"]  # nothing written


def test_output_dir_under_a_file_is_one_line(tmp_path, er_root, tiny_qwen_dir, capsys):
    from t2s_env.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["train", "grpo", "--config", TINY, f"root={er_root}", "dataset=earthreason:train",
               f"model_name_or_path=tiny:{tiny_qwen_dir}", f"output_dir={blocker / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("t2s: error: output_dir ") and "is a file" in err and err.count("\n") == 1
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_hub_id_fails_fast_offline(monkeypatch, tmp_path):
    """No network: one quick probe, then the local hub cache or a one-line error; never
    minutes of download retries."""
    import huggingface_hub

    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(repo_id)
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(ConfigError, match=r"not in the local hub cache .*\(hf download Qwen/Qwen2.5-VL-3B-Instruct"):
        resolve_hub_model("Qwen/Qwen2.5-VL-3B-Instruct")
    assert calls == ["Qwen/Qwen2.5-VL-3B-Instruct"]
    snapshot = tmp_path / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(snapshot / "config.json"))
    assert resolve_hub_model("Qwen/Qwen2.5-VL-3B-Instruct") == str(snapshot)


def test_cli_reports_bad_model_in_one_line(tmp_path, er_root, capsys):
    from t2s_env.cli import main

    rc = main(["train", "grpo", "--config", TINY, f"root={er_root}", "dataset=earthreason:train",
               f"model_name_or_path={tmp_path / 'missing'}", f"output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("t2s: error: ") and "does not exist" in err and err.count("\n") == 1
    notqwen = tmp_path / "gpt"
    notqwen.mkdir()
    (notqwen / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    rc = main(["train", "grpo", "--config", TINY, f"model_name_or_path={notqwen}", f"output_dir={tmp_path / 'out'}"])
    assert rc == 2 and "not Qwen2.5-VL" in capsys.readouterr().err


def test_resume_of_a_non_checkpoint_is_an_error(tmp_path):
    with pytest.raises(T2SError, match="trainer_state.json"):
        tg.resolve_resume(load(f"resume_from_checkpoint={tmp_path}"))
    assert tg.resolve_resume(load("--resume", f"output_dir={tmp_path / 'fresh'}")) is None
    assert load("--resume", "runs/x/checkpoint-4", "max_steps=5").training.resume_from_checkpoint == "runs/x/checkpoint-4"
    assert load("--resume=runs/y").training.resume_from_checkpoint == "runs/y"
    assert load("--max_steps", "5", "--resume").training.resume_from_checkpoint == "auto"


# -- training rows ----------------------------------------------------------------------------

@pytest.mark.slow
def test_redraw_changes_questions_across_epochs(er_root):
    cfg = load(f"root={er_root}", "dataset=earthreason:train", "num_train_epochs=4", "question_mode=redraw",
               "max_images=null")
    data = tg.build_train_data(cfg)
    rows = data.dataset.with_format(None)[:]  # raw columns, no image loading
    assert data.rows_per_epoch == 6 and len(rows["row_id"]) == 24
    by_epoch = [[i for i, e in enumerate(rows["epoch"]) if e == k] for k in range(4)]
    for idx in by_epoch:  # each image once per epoch
        assert sorted(rows["image_id"][i] for i in idx) == sorted(set(rows["image_id"]))
    questions = {}
    for img, q in zip(rows["image_id"], rows["question"]):
        questions.setdefault(img, set()).add(q)
    assert max(len(qs) for qs in questions.values()) > 1  # re-drawn, not fixed
    again = tg.build_train_data(cfg).dataset.with_format(None)[:]
    assert again["question"] == rows["question"] and again["image_id"] == rows["image_id"]  # seeded
    other = tg.build_train_data(load(f"root={er_root}", "dataset=earthreason:train", "num_train_epochs=4",
                                      "data_seed=5"))
    assert other.dataset.with_format(None)[:]["question"] != rows["question"]
    # the transform adds the conversational prompt and the framed image; masks via sample_id
    row = data.dataset[0]
    assert row["prompt"][0]["role"] == "system" and row["prompt"][1]["content"][0] == {"type": "image"}
    assert row["question"] in row["prompt"][1]["content"][1]["text"]
    assert row["image"].size == (SIZE, SIZE)
    assert data.gt_mask(row["sample_id"]).shape == (SIZE, SIZE)


def test_all_questions_mode(er_root):
    cfg = load(f"root={er_root}", "dataset=earthreason:train", "num_train_epochs=2", "question_mode=all",
               "max_images=null")
    rows = tg.build_train_data(cfg).dataset.with_format(None)[:]
    assert len(rows["row_id"]) == 2 * 6 * 3
    assert Counter(rows["sample_id"]) == {sid: 2 for sid in set(rows["sample_id"])}
    assert len(set(rows["sample_id"])) == 18


def test_sam2_is_built_on_this_ranks_device(monkeypatch, er_root):
    from accelerate import PartialState

    import t2s_env
    from t2s_env.segmenters import BoxSegmenter

    seen = {}

    def fake_make_segmenter(spec, **options):
        seen.update(spec=spec, **options)
        return BoxSegmenter()

    monkeypatch.setattr(t2s_env, "make_segmenter", fake_make_segmenter)
    cfg = load(f"root={er_root}", "dataset=earthreason:train", "segmenter=sam2:small",
               "segmenter_options.image_size=256")
    data = tg.build_train_data(cfg)
    tg.build_rewards(cfg, data, RewardMonitor())
    assert seen == {"spec": "sam2:small", "image_size": 256, "device": str(PartialState().device)}


def test_reward_monitor_statistics():
    from t2s_env import GeometricPrompt, format_completion

    scorer = Scorer("box")
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    gt = np.zeros((SIZE, SIZE), bool)
    gt[:56, :56] = True
    good = format_completion([GeometricPrompt(box=(0, 0, 56, 56), positive_points=((10, 10), (20, 20)))])
    results = scorer.score(image, gt, [good, good, "junk", good])
    logged = {}
    monitor = RewardMonitor(keep=2)
    monitor(results, {"row_id": [0, 0, 1, 1], "question": ["a", "a", "b", "b"],
                      "log_metric": lambda k, v: logged.__setitem__(k, v)})
    assert logged["t2s/mean_iou"] == pytest.approx(0.75)
    assert logged["t2s/parse_failure_rate"] == pytest.approx(0.25)
    assert logged["t2s/zero_std_group_frac"] == pytest.approx(0.5)
    assert logged["t2s/group_reward_std"] == pytest.approx(np.std([4.0, 0.0], ddof=1) / 2)
    assert len(monitor.samples) == 2
    assert monitor.samples[0]["completion"] == ""  # completions are recorded by the wrapped iou reward


def test_debug_dump_is_opt_in(tmp_path):
    scorer = Scorer("box")
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    gt = np.ones((SIZE, SIZE), bool)
    monitor = RewardMonitor(dump_dir=str(tmp_path / "debug"), rank=1)
    fn = monitor.wrap(lambda prompts=None, completions=(), **kw: [0.0] * len(completions))
    fn(completions=["junk"], sample_id=["a"])
    monitor(scorer.score(image, gt, ["junk"]), {"sample_id": ["a"], "question": ["q"]})
    lines = (tmp_path / "debug" / "rank1.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["completion"] == "junk" and json.loads(lines[0])["sample_id"] == "a"
    assert tg.ScriptArguments().debug_dump is False


def test_bare_resume_before_overrides(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(tg, "resolve_resume", lambda cfg: seen.setdefault("cfg", cfg) and None)
    monkeypatch.setattr(tg, "build_run", lambda cfg: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        tg.main(["--config", TINY, "--resume", "max_steps=9", f"output_dir={tmp_path}"])
    assert seen["cfg"].training.resume_from_checkpoint == "auto" and seen["cfg"].training.max_steps == 9


# -- two GRPO steps on the env's reward, TensorBoard, checkpoints, resume -------------------------

@pytest.fixture(scope="module")
def trained(tiny_qwen_dir, er_root, tmp_path_factory):
    """2 steps of the tiny recipe with spies on the reward callables."""
    out = tmp_path_factory.mktemp("grpo") / "run"
    cfg = load(*tiny_overrides(tiny_qwen_dir, er_root, out, weight_decay=0.1))
    run = tg.build_run(cfg)
    calls = []

    def spy(fn):
        def wrapped(prompts=None, completions=(), **kwargs):
            out = fn(prompts=prompts, completions=completions, **kwargs)
            calls.append({"name": fn.__name__, "prompts": prompts, "completions": completions,
                          "kwargs": kwargs, "rewards": out})
            return out

        wrapped.__name__ = fn.__name__
        return wrapped

    run.trainer.reward_funcs = [spy(f) for f in run.trainer.reward_funcs]
    run.trainer.train()
    return run, calls


@pytest.mark.slow
def test_two_grpo_steps_with_the_env_reward(trained):
    run, calls = trained
    cfg = run.cfg
    assert run.trainer.state.global_step == 2
    assert run.trainer.reward_func_names == ["t2s_iou", "t2s_json", "t2s_think"]
    assert run.trainer.reward_weights.tolist() == [2.0, 1.0, 1.0]
    assert {c["name"] for c in calls} == {"t2s_iou", "t2s_json", "t2s_think"}
    iou_calls = [c for c in calls if c["name"] == "t2s_iou"]
    assert len(iou_calls) == 2  # one generation batch per step
    for c in iou_calls:
        kw = c["kwargs"]
        n = len(c["completions"])
        assert n == cfg.training.per_device_train_batch_size * cfg.training.gradient_accumulation_steps
        for column in ("image", "image_id", "sample_id", "question", "row_id", "trainer_state", "log_metric"):
            assert column in kw, column
        assert all(len(kw[col]) == n for col in ("image", "image_id", "sample_id", "question", "row_id"))
        assert all(im.size == (SIZE, SIZE) for im in kw["image"])
        # each prompt repeated num_generations times, consecutively
        assert Counter(kw["row_id"]) == {r: cfg.training.num_generations for r in set(kw["row_id"])}
        assert all(isinstance(comp, list) and comp[0]["role"] == "assistant" and isinstance(comp[0]["content"], str)
                   for comp in c["completions"])
        assert c["prompts"][0][0]["role"] == "system"
        assert all(0.0 <= r <= 1.0 for r in c["rewards"])
        # the reward is the environment's: rescore with a fresh Scorer and compare
        scorer = Scorer("box")
        for i in range(n):
            gt = run.data.gt_mask(kw["sample_id"][i])
            res = scorer.score(np.asarray(kw["image"][i]), gt, [c["completions"][i]])[0]
            assert res.reward_components["iou"] == pytest.approx(c["rewards"][i])
    # checkpoints every step, no per-sample debug dump by default
    out = Path(cfg.training.output_dir)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert (out / "checkpoint-2" / "processor_config.json").is_file()
    assert not (out / "debug").exists()


@pytest.mark.slow
def test_tensorboard_has_reward_scalars_text_and_validation(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = trained
    ea = EventAccumulator(run.tensorboard_dir, size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for tag in ("train/reward", "train/rewards/t2s_iou/mean", "train/rewards/t2s_json/mean",
                "train/rewards/t2s_think/mean", "train/reward_std", "train/frac_reward_zero_std",
                "train/t2s/mean_iou", "train/t2s/parse_failure_rate", "train/t2s/group_reward_std",
                "train/t2s/zero_std_group_frac", "train/kl", "val/mean_iou", "val/parse_failure_rate"):
        assert tag in scalars, tag
    assert len(ea.Scalars("train/rewards/t2s_iou/mean")) == 2
    assert "val/overlays" in ea.Tags()["images"]
    assert any(t.startswith("samples/completions") for t in ea.Tags()["tensors"])
    assert run.callback.val_history and run.callback.val_history[-1]["step"] == 2


@pytest.mark.slow
def test_resume_loads_the_checkpoint_weights(trained):
    """transformers 5 saves Qwen2.5-VL under its original key names; the trainer's
    resume must still restore every weight (see T2SGRPOTrainer)."""
    import torch
    from transformers import AutoModelForImageTextToText

    run, _ = trained
    ckpt = Path(run.cfg.training.output_dir) / "checkpoint-1"
    model = run.trainer.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    run.trainer._load_from_checkpoint(str(ckpt))
    reference = AutoModelForImageTextToText.from_pretrained(ckpt).state_dict()
    state = model.state_dict()
    assert set(reference) == set(state)
    assert all(torch.equal(state[k], reference[k]) for k in reference)


@pytest.mark.slow
def test_cli_resume_continues_from_the_last_checkpoint(trained, tiny_qwen_dir, er_root, monkeypatch, capsys):
    """`--resume` must continue from checkpoint-2: its step (only step 3 is trained) and its
    weights (which weight decay moved away from the base model). A run restarted from
    scratch would train steps 1-3 from the base weights and fail both checks."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, TrainerCallback

    from t2s_env.cli import main

    run, _ = trained
    out = Path(run.cfg.training.output_dir)
    ckpt = out / "checkpoint-2"
    expected = AutoModelForImageTextToText.from_pretrained(ckpt).state_dict()
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir).state_dict()
    assert any(not torch.equal(expected[k], base[k]) for k in expected)  # else the weight check could not fail
    seen: dict = {"steps": []}

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["start_weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def on_step_end(self, args, state, control, **kwargs):
            seen["steps"].append(state.global_step)

    build_run = tg.build_run

    def spied_build_run(cfg):
        built = build_run(cfg)
        built.trainer.add_callback(Spy())
        return built

    monkeypatch.setattr(tg, "build_run", spied_build_run)
    argv = ["train", "grpo", "--config", TINY, *tiny_overrides(tiny_qwen_dir, er_root, out, max_steps=3, val_steps=0,
                                                                weight_decay=0.1), "--resume"]
    assert main(argv) == 0
    assert f"resuming {ckpt}" in capsys.readouterr().err
    assert seen["steps"] == [3]  # steps 1-2 came from the checkpoint
    start = seen["start_weights"]
    assert set(start) == set(expected) and all(torch.equal(start[k], expected[k]) for k in expected)
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    final = load_file(str(out / "model.safetensors"))
    assert final and (out / "processor_config.json").is_file()
    # the resolved config with provenance lies beside the checkpoints and is itself a recipe
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["max_steps"] == 3 and saved["num_train_epochs"] == 2 and saved["resume_from_checkpoint"] == "auto"
    assert saved["provenance"]["packages"]["trl"] and "git_commit" in saved["provenance"]
    again = tg.load_config(["--config", str(out / "config.yaml")])
    same = load(*tiny_overrides(tiny_qwen_dir, er_root, out, max_steps=3, val_steps=0, weight_decay=0.1))
    assert again.script == same.script and again.model == same.model and again.epochs == 2
    assert (again.training.max_steps, again.training.weight_decay, again.training.resume_from_checkpoint) == (3, 0.1, "auto")


def test_negative_max_steps_is_refused():
    """Issue 8 item 4: -1 is trl's "not set" (num_train_epochs decides); below it is a mistake."""
    assert load("max_steps=-1").training.max_steps == -1
    with pytest.raises(ConfigError, match=r"max_steps must be >= 1, or -1 .* got -5"):
        load("max_steps=-5")
