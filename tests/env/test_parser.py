"""Prompt strings (SPEC §2) and the answer parser (SPEC §3), written from the SPEC.

The parser must turn *any* string into a ParsedAnswer without raising; the
property-based tests below feed it random text and corrupted near-valid completions.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2s_env.errors import ConfigError
from t2s_env.instructions import (
    DEFAULT_VARIANT,
    SYSTEM_PROMPT,
    VARIANTS,
    build_messages,
    format_completion,
    get_variant,
)
from t2s_env.parser import ParsedAnswer, parse_completion, think_format_ok
from t2s_env.prompt import GeometricPrompt
from t2s_env.scoring import Scorer

# SPEC §2's strings, pinned in the repository (tests/contract/test_spec_strings.py checks the pin
# against its sha256 and, where the checkout sits next to it, against SPEC.md itself).
_PINNED = json.loads((Path(__file__).parents[1] / "data" / "spec_prompt_strings.json").read_text(encoding="utf-8"))
SPEC_SYSTEM = _PINNED["system"]
SPEC_USER = _PINNED["user"]
NEG_LINE = (
    "3.  `negative_points`: Exactly two points, placed outside the target's boundary to "
    "separate it from the background."
)
QUESTION = "Where could ships be repaired?"

ALL_VARIANTS = ["bbox+2pos", "bbox", "2pos", "bbox+4pos", "bbox+2pos+2neg"]
EXPECTED_COUNTS = {  # variant -> (box required/used, #positive, #negative)
    "bbox+2pos": (True, 2, 0),
    "bbox": (True, 0, 0),
    "2pos": (False, 2, 0),
    "bbox+4pos": (True, 4, 0),
    "bbox+2pos+2neg": (True, 2, 2),
}


def _answer(instances, think="the harbour has dry docks", fence=True) -> str:
    body = json.dumps(instances)
    if fence:
        body = f"```json{body}```"
    return f"<think>{think}</think>\n<answer>{body}</answer>"


def _inst(box=None, pos=None, neg=None) -> dict:
    d = {}
    if box is not None:
        d["bbox_2d"] = box
    if pos is not None:
        d["positive_points"] = pos
    if neg is not None:
        d["negative_points"] = neg
    return d


TWO = [[15, 15], [20, 20]]

# -- prompt strings (SPEC §2) -------------------------------------------------------------


def test_default_system_and_user_text_byte_for_byte():
    assert DEFAULT_VARIANT == "bbox+2pos"
    assert SYSTEM_PROMPT == SPEC_SYSTEM
    v = get_variant(DEFAULT_VARIANT)
    assert v.user_text(QUESTION) == SPEC_USER.replace("{Question}", QUESTION)
    # Only {Question} is substituted: braces in the question or in the JSON example are
    # left alone (no str.format surprises).
    q = 'a {weird} "question" with {} braces'
    assert v.user_text(q) == SPEC_USER.replace("{Question}", q)


def test_user_text_details():
    text = get_variant(DEFAULT_VARIANT).user_text(QUESTION)
    assert "\n1.  `bbox_2d`" in text and "\n2.  `positive_points`" in text
    assert "i.e. <think> thinking process here </think> \n<answer>" in text


def test_build_messages_structure():
    msgs = build_messages(QUESTION)
    assert [m["role"] for m in msgs] == ["system", "user"]
    sys_content = msgs[0]["content"]
    if isinstance(sys_content, list):
        sys_content = "".join(p["text"] for p in sys_content if p.get("type") == "text")
    assert sys_content == SPEC_SYSTEM
    user = msgs[1]["content"]
    assert isinstance(user, list) and len(user) == 2
    assert user[0] == {"type": "image"}
    assert user[1]["type"] == "text"
    assert user[1]["text"] == SPEC_USER.replace("{Question}", QUESTION)
    # messages for other variants use that variant's text
    assert build_messages(QUESTION, "2pos")[1]["content"][1]["text"] == get_variant("2pos").user_text(QUESTION)


def test_variants_are_config_choices():
    assert set(ALL_VARIANTS) <= set(VARIANTS)
    for name in ALL_VARIANTS:
        assert get_variant(name).name == name
    with pytest.raises(ConfigError):
        get_variant("bbox+3pos")


_HEAD = f'Please find "{QUESTION}", identify the target. For each target instance, provide'
_TAIL_START = "\nOutput your thinking process in <think> </think> tags.\n"


def _example_of(text: str) -> str:
    m = re.search(r"<answer>```json(.*)```</answer>$", text, re.DOTALL)
    assert m, text
    return m.group(1)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_variant_shares_head_and_tail(name):
    text = get_variant(name).user_text(QUESTION)
    default = get_variant(DEFAULT_VARIANT).user_text(QUESTION)
    assert text.startswith(_HEAD)
    tail = default[default.index(_TAIL_START):]
    tail_no_example = tail[: tail.index("<answer>```json")]
    assert tail_no_example in text


def test_variant_bbox_only_wording():
    text = get_variant("bbox").user_text(QUESTION)
    assert "positive_points" not in text and "negative_points" not in text
    assert "bounding box" in text
    example = json.loads(_example_of(text))
    assert all(set(inst) == {"bbox_2d"} for inst in example)


def test_variant_points_only_wording():
    text = get_variant("2pos").user_text(QUESTION)
    assert "provide two positive points, placed inside the target." in text
    assert "bbox_2d" not in text and "bounding box" not in text
    example = json.loads(_example_of(text))
    assert all(set(inst) == {"positive_points"} and len(inst["positive_points"]) == 2 for inst in example)


def test_variant_four_points_wording():
    text = get_variant("bbox+4pos").user_text(QUESTION)
    assert "2.  `positive_points`: Exactly four points, placed inside the target." in text
    assert "Exactly two points" not in text
    assert "1.  `bbox_2d`: A tight bounding box." in text
    example = json.loads(_example_of(text))
    assert all(len(inst["positive_points"]) == 4 for inst in example)


def test_variant_negative_points_wording():
    text = get_variant("bbox+2pos+2neg").user_text(QUESTION)
    assert "1.  `bbox_2d`: A tight bounding box.\n" in text
    assert "2.  `positive_points`: Exactly two points, placed inside the target.\n" + NEG_LINE + "\n" in text
    assert '"negative_points":[[320, 400], [500, 480]]' in text
    example = json.loads(_example_of(text))
    assert all(len(inst["negative_points"]) == 2 for inst in example)


@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_variant_example_parses_under_its_variant(name):
    """The JSON example shown to the model is a valid strict answer of that variant."""
    example = _example_of(get_variant(name).user_text(QUESTION))
    text = f"<think> x </think>\n<answer>```json{example}```</answer>"
    a = parse_completion(text, variant=name, mode="strict", image_size=(840, 840))
    assert a.ok and a.think_ok and len(a.prompts) == 2, a.error
    has_box, n_pos, n_neg = EXPECTED_COUNTS[name]
    for p in a.prompts:
        assert (p.box is not None) == has_box
        assert len(p.positive_points) == n_pos
        assert len(p.negative_points) == n_neg


def test_format_completion_round_trip():
    prompts = [
        GeometricPrompt((10, 20, 30, 40), ((15, 25), (20, 30))),
        GeometricPrompt((50.5, 60, 90, 99), ((60, 70), (80, 90))),
    ]
    text = format_completion(prompts, think="two docks")
    a = parse_completion(text, mode="strict")
    assert a.ok and a.think_ok
    assert set(a.prompts) == set(prompts)


# -- parser: modes, crop, repair ----------------------------------------------------------


def test_valid_answer_strict():
    a = parse_completion(_answer([_inst([10, 10, 50, 50], TWO)]), mode="strict", image_size=(100, 100))
    assert isinstance(a, ParsedAnswer)
    assert a.ok and a.think_ok and a.error is None
    assert a.prompts == (GeometricPrompt((10, 10, 50, 50), ((15, 15), (20, 20))),)
    assert not a.is_empty_answer


def test_strict_needs_fence_lenient_does_not():
    text = _answer([_inst([10, 10, 50, 50], TWO)], fence=False)
    assert not parse_completion(text, mode="strict").ok
    a = parse_completion(text, mode="lenient")
    assert a.ok and len(a.prompts) == 1


def test_strict_unclosed_fence_fails():
    text = '<think>t</think><answer>```json[{"bbox_2d": [1,1,5,5], "positive_points": [[2,2],[3,3]]}]</answer>'
    assert not parse_completion(text, mode="strict").ok


def test_empty_list():
    for mode in ("strict", "lenient"):
        a = parse_completion(_answer([]), mode=mode)
        assert a.ok and a.prompts == () and a.is_empty_answer
    assert parse_completion("<answer>[]</answer>", mode="lenient").is_empty_answer
    assert not parse_completion("<answer>[]</answer>", mode="strict").ok


def test_crop_first_to_last_bracket():
    inner = json.dumps([_inst([10, 10, 50, 50], TWO)])
    text = f"<think>t</think><answer>```json Here you go: {inner} hope it helps```</answer>"
    a = parse_completion(text, mode="strict")
    assert a.ok and len(a.prompts) == 1
    text = f"<think>t</think><answer>The targets are {inner}. Done.</answer>"
    assert parse_completion(text, mode="lenient").ok


def test_lenient_without_answer_tags():
    inner = json.dumps([_inst([10, 10, 50, 50], TWO)])
    a = parse_completion(f"I think the answer is {inner}", mode="lenient")
    assert a.ok and len(a.prompts) == 1 and not a.think_ok


def test_answer_tag_content_is_used():
    """Brackets in the think part must not leak into the answer."""
    inner = json.dumps([_inst([10, 10, 50, 50], TWO)])
    text = f"<think>candidates [1, 2] and [3]</think><answer>```json{inner}```</answer>"
    a = parse_completion(text, mode="strict")
    assert a.ok and len(a.prompts) == 1


@pytest.mark.parametrize(
    "body",
    [
        "[{'bbox_2d': [10,10,50,50], 'positive_points': [[15,15],[20,20]]}]",  # single quotes
        '[{"bbox_2d": [10,10,50,50], "positive_points": [[15,15],[20,20]],}]',  # trailing comma
        '[{bbox_2d: [10,10,50,50], positive_points: [[15,15],[20,20]]}]',  # bare keys
    ],
)
def test_json_repair_fallback(body):
    a = parse_completion(f"<think>t</think><answer>```json{body}```</answer>", mode="strict")
    assert a.ok, a.error
    assert a.prompts == (GeometricPrompt((10, 10, 50, 50), ((15, 15), (20, 20))),)


@pytest.mark.parametrize(
    "body",
    [
        '{"bbox_2d": [10,10,50,50], "positive_points": [[15,15],[20,20]]}',  # object, not list
        "[1, 2, 3]",
        "[[10, 10, 50, 50]]",
        '["bbox_2d"]',
        '[{"box": [10,10,50,50], "points": [[15,15],[20,20]]}]',  # neither key
        "[{}]",
        '[{"negative_points": [[1,1],[2,2]]}]',
        "null",
        "42",
        "",
    ],
)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_not_a_list_of_prompt_objects_fails(body, mode):
    a = parse_completion(f"<think>t</think><answer>```json{body}```</answer>", mode=mode)
    assert not a.ok and a.prompts == () and a.error
    assert not a.is_empty_answer


def test_one_bad_instance_fails_the_whole_answer():
    good = _inst([10, 10, 50, 50], TWO)
    bad = _inst([10, 10, 50], TWO)
    assert not parse_completion(_answer([good, bad])).ok


@pytest.mark.parametrize(
    "box",
    [
        [10, 10, 50],
        [10, 10, 50, 50, 60],
        ["10", 10, 50, 50],
        [True, 10, 50, 50],
        [10, None, 50, 50],
        [[10], 10, 50, 50],
        "10,10,50,50",
        None,
        {"x1": 10},
    ],
)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_bad_box_fails(box, mode):
    assert not parse_completion(_answer([{"bbox_2d": box, "positive_points": TWO}]), mode=mode).ok


@pytest.mark.parametrize(
    "pts",
    [
        [[15, 15]],
        [[15, 15], [20, 20], [25, 25]],
        [[15, 15], [20]],
        [[15, 15], [20, 20, 20]],
        [[15, 15], ["20", 20]],
        [[15, 15], [False, 20]],
        [15, 15],
        [],
        "[[15,15],[20,20]]",
    ],
)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_bad_positive_points_fail(pts, mode):
    assert not parse_completion(_answer([_inst([10, 10, 50, 50], pts)]), mode=mode).ok


def test_strict_requires_the_configured_points():
    # default variant: two positive points are part of every instance in strict mode
    box_only = _answer([_inst([10, 10, 50, 50])])
    assert not parse_completion(box_only, mode="strict").ok
    a = parse_completion(box_only, mode="lenient")
    assert a.ok and a.prompts[0].positive_points == ()
    # an instance carrying neither a box nor points is never valid
    for mode in ("strict", "lenient"):
        assert not parse_completion(_answer([{"positive_points": None}]), mode=mode).ok
        assert not parse_completion(_answer([{"bbox_2d": None, "positive_points": None}]), mode=mode).ok


def test_points_only_instance_in_default_variant():
    a = parse_completion(_answer([_inst(pos=TWO)]), mode="strict")
    assert a.ok and a.prompts[0].box is None and len(a.prompts[0].positive_points) == 2


def _pts(n, x0=20):
    return [[x0 + i, x0 + i] for i in range(n)]


@pytest.mark.parametrize("variant", ALL_VARIANTS)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_point_counts_follow_variant(variant, mode):
    has_box, n_pos, n_neg = EXPECTED_COUNTS[variant]
    box = [10, 10, 60, 60] if has_box else None
    good = _inst(box, _pts(n_pos) if n_pos else None, _pts(n_neg, 70) if n_neg else None)
    a = parse_completion(_answer([good]), variant=variant, mode=mode, image_size=(100, 100))
    assert a.ok, a.error
    p = a.prompts[0]
    assert len(p.positive_points) == n_pos and len(p.negative_points) == n_neg
    assert (p.box is not None) == has_box
    # a wrong count of positive points is rejected in both modes
    for wrong in {n_pos - 1, n_pos + 1, 2 if n_pos != 2 else 3} - {n_pos, -1, 0}:
        bad = dict(good, positive_points=_pts(wrong))
        assert not parse_completion(_answer([bad]), variant=variant, mode=mode).ok, (variant, wrong)
    # negative points: exactly n_neg when the variant has them, none otherwise
    for wrong in ({1, 3} if n_neg else {2}):
        bad = dict(good, negative_points=_pts(wrong, 70))
        assert not parse_completion(_answer([bad]), variant=variant, mode=mode).ok, (variant, wrong)
    if n_pos == 0:
        # a variant without positive points rejects them
        bad = dict(good, positive_points=_pts(2))
        assert not parse_completion(_answer([bad]), variant=variant, mode=mode).ok


def test_strict_needs_negative_points_in_neg_variant():
    text = _answer([_inst([10, 10, 60, 60], TWO)])
    assert not parse_completion(text, variant="bbox+2pos+2neg", mode="strict").ok
    assert parse_completion(text, variant="bbox+2pos+2neg", mode="lenient").ok


def test_unknown_variant_or_mode():
    with pytest.raises(ConfigError):
        parse_completion("[]", variant="nope")
    with pytest.raises(ValueError):
        parse_completion("[]", mode="sloppy")


# -- non-finite / huge numbers ------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400])
@pytest.mark.parametrize("where", ["box", "point"])
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_non_finite_values_rejected(literal, where, mode):
    box = f"[10, 10, {literal}, 50]" if where == "box" else "[10, 10, 50, 50]"
    pts = f"[[15, 15], [{literal}, 20]]" if where == "point" else "[[15, 15], [20, 20]]"
    body = f'[{{"bbox_2d": {box}, "positive_points": {pts}}}]'
    a = parse_completion(f"<think>t</think><answer>```json{body}```</answer>", mode=mode, image_size=(100, 100))
    assert not a.ok and a.prompts == ()


def test_large_finite_values_are_clipped():
    body = '[{"bbox_2d": [-1e300, -5, 1e300, 1e12], "positive_points": [[1e200, -3], [50, 50.5]]}]'
    a = parse_completion(f"<think>t</think><answer>```json{body}```</answer>", image_size=(100, 80))
    assert a.ok
    p = a.prompts[0]
    assert p.box == (0.0, 0.0, 100.0, 80.0)
    assert p.positive_points == ((100.0, 0.0), (50.0, 50.5))


# -- clipping, reordering, NMS, cap -------------------------------------------------------


def test_clip_and_reorder():
    a = parse_completion(
        _answer([_inst([90, 70, -10, 5], [[-5, 200], [30, 40]])]), mode="strict", image_size=(80, 60)
    )
    assert a.ok
    p = a.prompts[0]
    assert p.box == (0.0, 5.0, 80.0, 60.0)
    assert p.positive_points == ((0.0, 60.0), (30.0, 40.0))
    for x1, y1, x2, y2 in [p.box]:
        assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 60


def test_reorder_without_image_size():
    a = parse_completion(_answer([_inst([50, 40, 10, 5], TWO)]), mode="strict")
    assert a.ok and a.prompts[0].box == (10.0, 5.0, 50.0, 40.0)


def test_nms_drops_duplicates_keeps_largest():
    big = _inst([0, 0, 100, 100], TWO)
    dup = _inst([0, 0, 90, 90], TWO)  # IoU 0.81 with big
    far = _inst([200, 200, 250, 250], TWO)
    a = parse_completion(_answer([dup, far, big]), image_size=(300, 300))
    assert a.ok
    boxes = {p.box for p in a.prompts}
    assert boxes == {(0.0, 0.0, 100.0, 100.0), (200.0, 200.0, 250.0, 250.0)}


def test_nms_threshold_is_strictly_greater_than_half():
    a_box = [0, 0, 100, 100]
    # IoU exactly 0.5: [0,0,100,50] lies inside a_box, 5000 / 10000
    half = parse_completion(_answer([_inst(a_box, TWO), _inst([0, 0, 100, 50], TWO)]), image_size=(300, 300))
    assert len(half.prompts) == 2
    # just above 0.5
    above = parse_completion(_answer([_inst(a_box, TWO), _inst([0, 0, 100, 51], TWO)]), image_size=(300, 300))
    assert [p.box for p in above.prompts] == [(0.0, 0.0, 100.0, 100.0)]
    # below
    below = parse_completion(_answer([_inst(a_box, TWO), _inst([0, 0, 100, 49], TWO)]), image_size=(300, 300))
    assert len(below.prompts) == 2


def test_nms_suppressed_box_does_not_suppress_others():
    a = _inst([0, 0, 100, 100], TWO)  # area 10000
    b = _inst([20, 0, 110, 100], TWO)  # area 9000, IoU(a,b) = 8000/11000 > 0.5
    c = _inst([40, 0, 125, 100], TWO)  # area 8500, IoU(a,c) = 6000/12500 < 0.5, IoU(b,c) = 7000/10500 > 0.5
    res = parse_completion(_answer([c, b, a]), image_size=(300, 300))
    assert {p.box for p in res.prompts} == {(0.0, 0.0, 100.0, 100.0), (40.0, 0.0, 125.0, 100.0)}


def test_nms_identical_boxes_and_boxless_instances():
    same = [_inst([10, 10, 50, 50], TWO) for _ in range(5)]
    res = parse_completion(_answer(same), image_size=(100, 100))
    assert len(res.prompts) == 1
    pts_only = [_inst(pos=TWO), _inst(pos=TWO)]
    res = parse_completion(_answer(pts_only + same), image_size=(100, 100))
    assert len(res.prompts) == 3


def _reference_nms(boxes, thr=0.5):
    """SPEC §3 from the text: largest area first, drop a box whose IoU with a kept box > thr."""
    def area(b):
        return max(0, b[2] - b[0]) * max(0, b[3] - b[1])

    def iou(a, b):
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        u = area(a) + area(b) - w * h
        return w * h / u if u > 0 else 0.0

    kept = []
    for b in sorted(boxes, key=area, reverse=True):
        if all(iou(b, k) <= thr for k in kept):
            kept.append(b)
    return sorted(kept)


@st.composite
def _boxes(draw):
    n = draw(st.integers(0, 12))
    out = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, 40)), draw(st.integers(0, 40))
        out.append((x1, y1, x1 + draw(st.integers(0, 30)), y1 + draw(st.integers(0, 30))))
    return out


@settings(max_examples=200, deadline=None)
@given(_boxes())
def test_nms_matches_reference(boxes):
    text = _answer([{"bbox_2d": list(b)} for b in boxes])
    a = parse_completion(text, variant="bbox", mode="strict", image_size=(100, 100))
    assert a.ok
    got = sorted(tuple(int(v) for v in p.box) for p in a.prompts)
    assert got == _reference_nms(boxes)


def test_instances_capped():
    many = [_inst([10 * i, 0, 10 * i + 8, 8], [[10 * i + 1, 1], [10 * i + 2, 2]]) for i in range(100)]
    a = parse_completion(_answer(many), image_size=(1000, 1000))
    assert a.ok and 1 <= len(a.prompts) <= 64
    a = parse_completion(_answer(many), image_size=(1000, 1000), max_instances=5)
    assert a.ok and len(a.prompts) == 5


# -- think format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>a</think><answer>b</answer>", True),
        ("<think>a</think> \n\t <answer>b</answer>", True),
        ("<think>multi\nline</think>\n<answer>\n[]\n</answer>", True),
        ("<think></think><answer></answer>", True),
        ("hello <think>a</think><answer>b</answer>", False),
        ("<think>a</think><answer>b</answer> bye", False),
        ("<think>a</think>x<answer>b</answer>", False),
        ("<think>a</think>", False),
        ("<answer>b</answer>", False),
        ("<answer>b</answer><think>a</think>", False),
        ("", False),
    ],
)
def test_think_format(text, ok):
    assert think_format_ok(text) is ok
    assert parse_completion(text, mode="lenient").think_ok is ok


# -- never raises -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        None,
        123,
        4.5,
        ["<answer>[]</answer>"],
        {"a": 1},
        b"<think>t</think><answer>```json[]```</answer>",
        b"\xff\xfe\x00",
        "[" * 100_000,
        "[[[[" * 20_000 + "]]]]",
        "[" * 5000 + "]" * 5000,
        '{"a":' * 10_000,
        "```json" + "[{" * 3000 + "```",
        "<answer>```json[" + '{"bbox_2d": [1,2,3,4]},' * 500 + "]```</answer>",
        "x" * 300_000,
        "[" + "9" * 5000 + "]",
        '[{"bbox_2d": [' + "1" * 5000 + ', 0, 5, 5], "positive_points": [[1,1],[2,2]]}]',
        "\x00\ud800\udfff" + "\U0001f600" * 10,
        "<answer>```json[\ud83d]```</answer>",
    ],
)
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_never_raises_on_pathological_input(text, mode):
    a = parse_completion(text, mode=mode, image_size=(64, 64))
    assert isinstance(a, ParsedAnswer)
    if not isinstance(text, (str, bytes)):
        assert not a.ok


IMG = np.zeros((48, 64, 3), dtype=np.uint8)
GT = np.zeros((48, 64), dtype=bool)
GT[10:30, 20:50] = True
_SCORERS = {
    (v, m): Scorer("box", prompt_variant=v, parser_mode=m) for v in ALL_VARIANTS for m in ("strict", "lenient")
}

numbers = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
point = st.lists(numbers, min_size=0, max_size=3)
instance = st.dictionaries(
    st.sampled_from(["bbox_2d", "positive_points", "negative_points", "box", "ünï"]),
    st.one_of(st.lists(numbers, max_size=5), st.lists(point, max_size=5), numbers),
    max_size=4,
)
json_list = st.lists(instance, max_size=6).map(lambda x: json.dumps(x, ensure_ascii=False))


@st.composite
def corrupted_completion(draw):
    body = draw(json_list)
    wrappers = [
        "<think>{t}</think>\n<answer>```json{b}```</answer>",
        "<think>{t}</think><answer>{b}</answer>",
        "{t} {b}",
        "<answer>```json{b}",
        "<think>{t}</think>\n<answer>```json{b}```</answer>{t}",
    ]
    text = draw(st.sampled_from(wrappers)).format(t=draw(st.text(max_size=20)), b=body)
    # random corruption: deletions, insertions of junk/brackets/unicode, duplication
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "nest"]))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 10)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            junk = draw(st.one_of(st.text(max_size=5), st.sampled_from(["[", "]", "{", "}", '"', ",", "```", "NaN", "1e999", "\u202e", "\x00"])))
            text = text[:i] + junk + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            depth = draw(st.integers(1, 3000))
            text = text[:i] + "[" * depth + text[i:]
    return text


def _check_total(text, variant, mode):
    a = parse_completion(text, variant=variant, mode=mode, image_size=(64, 48))
    assert isinstance(a, ParsedAnswer)
    assert a.ok or a.prompts == ()
    for p in a.prompts:
        if p.box is not None:
            x1, y1, x2, y2 = p.box
            assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 48
        for x, y in p.positive_points + p.negative_points:
            assert math.isfinite(x) and math.isfinite(y)
            assert 0 <= x <= 64 and 0 <= y <= 48
    res = _SCORERS[(variant, mode)].score(IMG, GT, [text])[0]
    assert 0.0 <= res.reward <= 4.0
    assert 0.0 <= res.iou <= 1.0


_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
variants = st.sampled_from(ALL_VARIANTS)
modes = st.sampled_from(["strict", "lenient"])


@_SETTINGS
@given(st.text(), variants, modes)
def test_never_raises_random_text(text, variant, mode):
    _check_total(text, variant, mode)


@_SETTINGS
@given(corrupted_completion(), variants, modes)
def test_never_raises_corrupted_completions(text, variant, mode):
    _check_total(text, variant, mode)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2000), st.sampled_from(["[", "[{", '{"a":[', "[[[[", '[{"bbox_2d":']), st.text(max_size=10))
def test_never_raises_deep_nesting(depth, unit, tail):
    text = "<think>t</think><answer>```json" + unit * depth + tail + "]```</answer>"
    for mode in ("strict", "lenient"):
        _check_total(text, DEFAULT_VARIANT, mode)


def test_thousands_of_instances_parse_in_bounded_memory():
    """A degenerate answer with thousands of boxes (the length limit allows ~9000):
    de-duplication must not build N×N matrices (gigabytes). Its speed is timed in
    tests/perf/test_bench_parser.py, never asserted here."""
    import tracemalloc

    body = "[" + ",".join('{"bbox_2d":[%d,0,%d,5]}' % (i, i + 4) for i in range(4000)) + "]"
    text = f"<think>t</think><answer>```json{body}```</answer>"
    tracemalloc.start()
    try:
        a = parse_completion(text, variant="bbox", image_size=(8000, 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert a.ok and len(a.prompts) == 64
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"
