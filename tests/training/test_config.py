"""The training scripts' config loader (scripts/config.py): trl's TrlParser with a YAML
recipe, ``key=value`` and ``--key value`` overrides, one-line errors, saved provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

pytest.importorskip("trl")

from think2seg.scripts.config import parse_config, save_resolved_config  # noqa: E402
from t2s_env import ConfigError  # noqa: E402


@dataclass
class Args:
    dataset: str = "synthetic:train"
    root: str | None = None
    mode: Literal["redraw", "all"] = "redraw"
    steps: int = 10
    rate: float = 1e-3
    flag: bool = False
    max_images: int | None = None
    modules: list[str] = field(default_factory=lambda: ["q_proj"])
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class More:
    seed: int = 0


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_precedence_recipe_then_key_value_then_options(tmp_path):
    recipe = write(tmp_path, "steps: 3\nrate: 1e-4\nmodules: [a, b]\noptions: {size: 256, mode: x}\nseed: 5\n")
    args, more = parse_config(["--config", recipe], Args, More)
    assert (args.steps, args.rate, args.modules, args.options, more.seed) == (3, 1e-4, ["a", "b"], {"size": 256, "mode": "x"}, 5)
    args, more = parse_config(["--steps", "9", "--config", recipe, "steps=4", "options.size=128", "root=null",
                               "flag=true", "max_images=7", "dataset=007"], Args, More)
    assert args.steps == 9  # --key value wins over key=value, wherever it stands
    assert args.options == {"size": 128, "mode": "x"} and args.root is None and args.flag is True
    assert args.max_images == 7 and args.dataset == "007"  # a string field keeps what was written
    args, _ = parse_config(["--modules", "k", "v", "--flag", "--options", "{size: 64}", "mode=all"], Args, More)
    assert args.modules == ["k", "v"] and args.flag is True and args.options == {"size": 64} and args.mode == "all"
    (args,) = parse_config(["--dataset", "a=b"], Args)  # the value of an option is never an override
    assert args.dataset == "a=b"
    args, _ = parse_config([], Args, More, defaults={"steps": 2})
    assert args.steps == 2


@pytest.mark.parametrize("argv, message", [
    (["stepz=3"], r"override 'stepz=3': unknown key 'stepz' \(did you mean steps\?\)"),
    (["--stepz", "3"], r"command line: unknown key 'stepz' \(did you mean steps\?\)"),
    (["--step", "3"], r"unknown key 'step'"),  # no argparse abbreviations
    (["steps=three"], r"--steps.*invalid int value: 'three'"),
    (["--steps", "three"], r"--steps.*invalid int value: 'three'"),
    (["mode=sometimes"], r"mode must be one of redraw, all, got 'sometimes'"),
    (["flag=3"], r"flag must be true or false, got 3"),
    (["steps=[1]"], r"steps must be an integer, got \[1\]"),
    (["modules={a: 1}"], r"modules must be a list"),
    (["options=[1]"], r"options must be a mapping"),
    (["steps.x=1"], r"steps is not a mapping"),
    (["junk"], r"unexpected argument 'junk'"),
    (["--config"], r"--config needs a YAML file"),
    (["--config", "/nonexistent/r.yaml"], r"config file /nonexistent/r.yaml not found"),
])
def test_every_mistake_is_one_line(argv, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(argv, Args, More)
    assert "\n" not in str(info.value)


def test_recipe_file_mistakes(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key 'rte' \(did you mean rate\?\)"):
        parse_config(["--config", write(tmp_path, "steps: 1\nrte: 0.1\n")], Args)
    with pytest.raises(ConfigError, match=r"steps must be an integer, got \[1, 2\]"):
        parse_config(["--config", write(tmp_path, "steps: [1, 2]\n")], Args)
    with pytest.raises(ConfigError, match=r"is not valid YAML \(line 3, column \d+\)") as info:
        parse_config(["--config", write(tmp_path, "steps: 1\nrate: [1, 2\nflag: true\n")], Args)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_config(["--config", write(tmp_path, "- a\n- b\n")], Args)
    with pytest.raises(ConfigError, match="is a folder"):
        parse_config(["--config", str(tmp_path)], Args)


def test_env_block_sets_environment_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("T2S_TEST_CONFIG_ENV", raising=False)
    parse_config(["--config", write(tmp_path, "env: {T2S_TEST_CONFIG_ENV: 1}\nsteps: 2\n")], Args)
    import os

    assert os.environ["T2S_TEST_CONFIG_ENV"] == "1"


def test_print_config_prints_a_reusable_recipe(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["steps=4", "--print-config"], Args, More)
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["steps"] == 4 and printed["seed"] == 0 and printed["modules"] == ["q_proj"]


@pytest.mark.slow
def test_saved_config_round_trips_with_trl_and_records_provenance(tmp_path):
    from trl import GRPOConfig, ModelConfig

    argv = ["--output_dir", str(tmp_path / "run"), "--use_cpu", "--bf16", "false", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "steps=5", "lora_target_modules=[q_proj,v_proj]",
            "--model_name_or_path", "some/model"]
    objs = parse_config(argv, Args, GRPOConfig, ModelConfig)
    path = save_resolved_config(tmp_path / "run", *objs, argv=argv)
    saved = yaml.safe_load(path.read_text())
    prov = saved["provenance"]
    in_git = (Path(__file__).resolve().parents[2] / ".git").exists()
    assert (len(prov["git_commit"]) == 40) if in_git else prov["git_commit"] is None
    assert prov["packages"]["trl"] and prov["packages"]["torch"] and isinstance(prov["git_dirty"], (bool, type(None)))
    assert "steps=5" in prov["command"] and saved["steps"] == 5 and saved["num_generations"] == 2
    again = parse_config(["--config", str(path)], Args, GRPOConfig, ModelConfig)
    assert again[0] == objs[0] and again[2] == objs[2]
    assert again[1].to_dict() == objs[1].to_dict()  # trl's derived fields do not clash on reload


def test_trl_post_init_errors_are_one_line():
    from trl import GRPOConfig

    with pytest.raises(ConfigError, match="invalid configuration: ") as info:
        parse_config(["--use_cpu", "--bf16", "false", "--num_generations", "3", "--per_device_train_batch_size", "4",
                      "--output_dir", "/tmp/unused"], GRPOConfig)
    assert "\n" not in str(info.value)
