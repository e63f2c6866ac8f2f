"""One ``KEY=VALUE`` grammar (t2s_env/options.py) for every command line: the value table,
the one-line errors, and, for each of the four parsers it replaced (an agent's ``name:arg``,
``t2s bench``'s options, ``t2s serve --segmenter-option``, the training scripts'
``key=value``), the cases where that parser used to read a value differently."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from think2seg.agents import Agent, make_agent
from t2s_env import ConfigError
from t2s_env.options import parse_key_values, parse_value


@pytest.mark.parametrize("text, value", [
    ("true", True), ("False", False), ("TRUE", True),
    ("null", None), ("~", None), ("", None), ("  ", None),
    ("3", 3), ("-7", -7), ("+3", 3), ("010", 10), ("0x1f", 31), ("0o17", 15),
    ("0.5", 0.5), (".5", 0.5), ("1.", 1.0), ("1e3", 1000.0), ("-2.5E-4", -2.5e-4), (".inf", math.inf),
    ("-.inf", -math.inf),
    ("[a, 1, 1e3, yes, null]", ["a", 1, 1000.0, "yes", None]), ("{k: v, n: 010}", {"k": "v", "n": 10}),
    ("[q_proj,v_proj]", ["q_proj", "v_proj"]),
    ("'a b'", "a b"), ('"a\\tb"', "a\tb"), ("'true'", "true"), ('"3"', "3"),
    # the text as written
    ("yes", "yes"), ("off", "off"), ("tRuE", "tRuE"), ("inf", "inf"), ("nan", "nan"), ("1_000", "1_000"),
    ("12:30", "12:30"), ("2024-01-01", "2024-01-01"), ("/ckpt/sam2.1_hiera_small.pt", "/ckpt/sam2.1_hiera_small.pt"),
    ("cuda:0", "cuda:0"), (">", ">"), (">=", ">="), ("a #b", "a #b"), ("a: b", "a: b"), ("&x", "&x"),
    ("  spaced  ", "spaced"), ("[1,", "[1,"), ("'open", "'open"), ("[a] b", "[a] b"),
])
def test_the_value_table(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_nan_is_a_float():
    assert math.isnan(parse_value(".nan"))


def test_key_values_strip_keys_keep_the_last_and_split_at_the_first_equals():
    assert parse_key_values([" a =1", "b=x=y", "a=2", "c="], "--opt") == {"a": 2, "b": "x=y", "c": None}
    assert parse_key_values(None, "--opt") == {}


@pytest.mark.parametrize("item", ["novalue", "=3", " =3"])
def test_a_malformed_item_is_one_line_naming_the_flag(item):
    with pytest.raises(ConfigError) as exc:
        parse_key_values(["a=1", item], "--segmenter-option", "keys: a, b")
    assert str(exc.value) == f"--segmenter-option takes KEY=VALUE, got {item!r}; keys: a, b"


# -- each former parser: what it read differently ---------------------------------------------

class EchoAgent(Agent):
    """Keeps its ``:arg`` as parsed."""

    name = "echo"
    arg_name = "value"

    def __init__(self, value: Any = "unset") -> None:
        self.value = value

    def act(self, observation, info):
        return "[]"


@pytest.mark.parametrize("arg, value", [
    ("1e3", 1000.0), ("true", True), ("3", 3), ("/ckpt/model", "/ckpt/model"),  # as agents/_coerce read them
    ("null", None), ("", None), ("[1, 2]", [1, 2]), ("'3'", "3"),  # _coerce: "null", "", "[1, 2]", "'3'"
    ("1_000", "1_000"), ("inf", "inf"), ("tRuE", "tRuE"),           # _coerce: int 1000, float inf, True
])
def test_an_agents_arg(arg, value):
    got = make_agent(f"tests.env.test_options:EchoAgent:{arg}").value
    assert got == value and type(got) is type(value)


def test_bench_segmenter_options_read_1e1_as_a_number(tmp_path):
    """``--segmenter-option`` was read as YAML 1.1, where ``1e1`` is text (the box segmenter
    refused it); ``--protocol-option`` values were text, ``FALSE`` now a bool."""
    from tests.datagen import write_rectangle_dataset
    from think2seg.benchmarks import cli, plan
    from think2seg.benchmarks.results_store import ResultsStore

    write_rectangle_dataset(tmp_path / "data", split="val", n=2, n_empty=0, seed=1, size=64)
    args = cli.build_parser().parse_args([
        "--dataset", "earthreason:val", "--root", str(tmp_path / "data"), "--agents", "oracle-box",
        "--segmenter", "box", "--segmenter-option", "point_radius=1e1", "--protocol-option", "comparator=>",
        "--protocol-option", "ciou_includes_empty_gt=FALSE", "--protocol-option", "image_size=64"])
    (job,) = plan.plan_new(args, ResultsStore(tmp_path / "out"), [])
    assert job.runs[0].config["segmenter"]["options"] == {"point_radius": 10.0}
    assert job.segmenter.point_radius == 10.0
    assert (job.protocol.comparator, job.protocol.ciou_includes_empty_gt, job.protocol.image_size) == (">", False, 64)
    for bad in ("ciou_includes_empty_gt=1", "image_size=1e3", "image_size="):  # 1 is no bool, 1000.0 no int
        with pytest.raises(ConfigError, match="--protocol-option"):
            plan.resolve_protocol(cli.build_parser().parse_args(["--protocol-option", bad]))


def test_serve_segmenter_options(monkeypatch):
    """``t2s serve`` read its options as YAML 1.1 and raised a YAML traceback on ``[1,``."""
    pytest.importorskip("uvicorn")
    import t2s_env.segmenters
    from think2seg.scripts import serve

    seen = {}

    def make_segmenter(spec, **options):
        seen.update(options)
        raise ConfigError("stop here")

    monkeypatch.setattr(t2s_env.segmenters, "make_segmenter", make_segmenter)
    with pytest.raises(ConfigError, match="stop here"):
        serve.main(["--segmenter-option", " point_radius = 1e1", "--segmenter-option", "tag=[1,",
                    "--segmenter-option", "flag=yes", "--segmenter-option", "checkpoint="])
    assert seen == {"point_radius": 10.0, "tag": "[1,", "flag": "yes", "checkpoint": None}
    with pytest.raises(ConfigError, match="--segmenter-option takes KEY=VALUE, got 'point_radius'"):
        serve.main(["--segmenter-option", "point_radius"])


@dataclass
class Recipe:
    steps: int = 10
    name: str = "run"
    flag: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def test_training_key_value_overrides():
    """The config loader read ``key=value`` as YAML 1.1: ``010`` was eight, a date was a
    date (refused for a string field), ``yes`` inside a mapping was True."""
    pytest.importorskip("trl")
    from think2seg.scripts.config import parse_config

    (r,) = parse_config(["steps=010", "name=2024-01-01", "flag=yes", "options={a: yes, b: 1e3}",
                         "options.when=2024-01-01"], Recipe)
    assert (r.steps, r.name, r.flag) == (10, "2024-01-01", True)
    assert r.options == {"a": "yes", "b": 1000.0, "when": "2024-01-01"}
    (r,) = parse_config(["name=007", "options.x=null"], Recipe)  # a string field keeps what was written
    assert r.name == "007" and r.options == {"x": None}


def test_the_docs_table_is_the_grammar():
    """docs/benchmark.md's "Option values" table: each example reads as the kind it names."""
    kinds = {"bool": (bool,), "None": (type(None),), "int": (int,), "float": (float,), "list": (list, dict),
             "str": (str,)}
    text = (Path(__file__).resolve().parents[2] / "docs" / "benchmark.md").read_text()
    section = text.split("## Option values", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 7
    for examples, reads in rows:
        kind = kinds[reads.split()[0].rstrip(":")]
        for example in re.findall(r"`([^`]+)`", examples):
            assert type(parse_value(example)) in kind, (example, reads)
