"""The parser's linear-time scans return exactly what upstream's regular expressions do.

Upstream (and this project until issue 8) ran three backtracking patterns on model output:
``<answer>(.*?)</answer>`` (search), ```` ```json\\s*(.*?)\\s*``` ```` (search) and
``<think>.*?</think>\\s*<answer>.*?</answer>`` (fullmatch), all with DOTALL. They are
kept below as the reference semantics and compared with the ``str.find`` scans on a large
seeded random corpus of tags, fences, brackets, whitespace runs and JSON. Their worst
cases (cubic/quadratic) are timed in ``tests/perf/test_bench_parser.py``.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from t2s_env import parser
from t2s_env.parser import parse_completion, think_format_ok

# -- the reference semantics (the patterns as they ran before) ------------------------------

REF_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
REF_FENCE = re.compile(r"```json\s*(.*?)\s*```", re.DOTALL)
REF_THINK = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def ref_answer_span(s: str) -> str:
    if "<answer>" in s and "</answer>" in s:
        m = REF_ANSWER.search(s)
        if m:
            return m.group(1).strip()
    return s


def ref_fence_body(s: str):
    m = REF_FENCE.search(s)
    return None if m is None else m.group(1).strip()


def ref_think(s: str) -> bool:
    return REF_THINK.fullmatch(s) is not None


# -- the corpus ---------------------------------------------------------------------------

TOKENS = [
    "<think>", "</think>", "<answer>", "</answer>", "```json", "```", "``", "`", "json",
    "<answer", "answer>", "</answer", "<think", "think>", "</", "<", ">",
    "[", "]", "[]", "{", "}", ",", ":", '"', "'",
    " ", "  ", "\n", "\n\n", "\t", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u2003", "\u3000",
    "abc", "x", "ships", "0", "-1", "1e400", "NaN", "null", "true",
    '{"bbox_2d": [1, 2, 30, 40], "positive_points": [[5, 6], [7, 8]]}',
    '{"bbox_2d": [30, 40, 1, 2]}', '{"positive_points": [[5, 6], [7, 8]]}',
    '{"bbox_2d": [1, 2, 3], "positive_points": null}', "{'bbox_2d': [1,2,3,4],}",
    '[{"bbox_2d": [1, 2, 30, 40], "positive_points": [[5, 6], [7, 8]]}]',
]
TEMPLATES = [
    "<think>{a}</think>{ws}<answer>{b}</answer>",
    "<think>{a}</think>{ws}<answer>```json{ws}{b}{ws}```</answer>",
    "{a}<answer>{b}</answer>{a}",
    "{a}```json{ws}{b}{ws}```{a}",
    "<think>{a}</think>{b}<answer>{a}</answer>",
    "<think>{a}</think>{ws}<answer>{b}",
    "{a}```json{ws}{b}",
]


def _random_text(rng: random.Random) -> str:
    def chunk(max_tokens: int) -> str:
        return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, max_tokens)))

    if rng.random() < 0.5:
        return chunk(30)
    ws = "".join(rng.choice([" ", "\n", "\t", "\u3000", "\x0b"]) for _ in range(rng.randint(0, 6)))
    return rng.choice(TEMPLATES).format(a=chunk(8), b=chunk(8), ws=ws)


CORPUS_SIZE = 30_000


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(20261130)
    return [_random_text(rng) for _ in range(CORPUS_SIZE)]


def test_corpus_exercises_every_outcome(corpus):
    # The comparison only means something if both answers of each test occur often.
    think = sum(ref_think(s) for s in corpus)
    fence = sum(ref_fence_body(s) is not None for s in corpus)
    answer = sum(ref_answer_span(s) != s for s in corpus)
    for hits in (think, fence, answer):
        assert 1000 < hits < CORPUS_SIZE - 1000


def test_answer_span_equals_the_regex(corpus):
    for s in corpus:
        assert parser._answer_span(s) == ref_answer_span(s), repr(s)


def test_fence_body_equals_the_regex(corpus):
    for s in corpus:
        assert parser._fence_body(s) == ref_fence_body(s), repr(s)


def test_think_fullmatch_equals_the_regex(corpus):
    for s in corpus:
        assert parser._think_fullmatch(s) == ref_think(s), repr(s)
        assert think_format_ok(s) == ref_think(s)


def test_whitespace_class_is_str_isspace():
    # The fence scan relies on \s (what the pattern skips) and str.strip (what the parser
    # strips) agreeing on every code point.
    import sys

    ws = re.compile(r"\s")
    assert all((ws.fullmatch(chr(c)) is not None) == chr(c).isspace() for c in range(sys.maxunicode + 1))


def _ref_parse_prefix(text: str, mode: str):
    """What upstream's steps hand to the JSON decoder (or why they stop)."""
    s = ref_answer_span(text)
    if mode == "strict":
        if "```json" not in s:
            return "no fence"
        body = ref_fence_body(s)
        if body is None:
            return "unclosed fence"
        s = body
    if "[" in s and "]" in s:
        s = s[s.find("[") : s.rfind("]") + 1]
    return s


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_whole_parse_matches_regex_pipeline(corpus, mode, monkeypatch):
    # The parser, end to end, decodes exactly what the regex pipeline would have decoded.
    seen = []
    real_loads = parser._loads

    def spy(s):
        seen.append(s)
        return real_loads(s)

    monkeypatch.setattr(parser, "_loads", spy)
    for text in corpus[:5000]:
        seen.clear()
        a = parse_completion(text, mode=mode, image_size=(100, 100))
        ref = _ref_parse_prefix(text, mode)
        if ref in ("no fence", "unclosed fence"):
            assert not a.ok and ("fence" in (a.error or "")), repr(text)
        else:
            assert seen[0] == ref, repr(text)
        assert a.think_ok == ref_think(text)


def test_structured_answers_still_parse():
    body = json.dumps([{"bbox_2d": [1, 2, 30, 40], "positive_points": [[5, 6], [7, 8]]}])
    text = f"<think> t </think>\n \u3000<answer>\n```json \n{body}\n ```\n</answer>"
    a = parse_completion(text, image_size=(100, 100))
    assert a.ok and a.think_ok and a.prompts[0].box == (1.0, 2.0, 30.0, 40.0)


# -- the JSON-repair fallback's work bound -----------------------------------------------

BROKEN = [
    "[{'bbox_2d': [1,2,30,40], 'positive_points': [[5,6],[7,8]],},]",
    '[{"bbox_2d": [1,2,30,40] "positive_points": [[5,6],[7,8]]}]',
    '[{"bbox_2d": [1,2,30,40], "positive_points": [[5,6],[7,8]]',
    "[{bbox_2d: [1, 2, 30, 40]}]",
    '[{"bbox_2d": [1,2,30,40], "positive_points": [[5,6],[7,8]]}, {"bbox_2d": [3,4,5,6]},]',
    "[" + "{'bbox_2d': [1,2,30,40], 'positive_points': [[5,6],[7,8]]}," * 20 + "]",
]


def test_repair_within_its_budget_is_the_repair_parser():
    import json_repair

    for s in BROKEN:
        assert parser._loads(s) == json_repair.loads(s)


@pytest.mark.parametrize("unit", ["t]{", "{", "{\n],"])
def test_repair_gives_up_on_superlinear_inputs(unit, monkeypatch):
    # json_repair is superlinear on these ("[" + "t]{" * 1333: 2.7 million reads, ~4 s):
    # the counted reads stop
    # it after MAX_REPAIR_READS, so the answer is a failed parse, the same every time.
    reads = []
    real = parser._CountedText.__getitem__

    def spy(self, key):
        reads.append(1)
        return real(self, key)

    monkeypatch.setattr(parser._CountedText, "__getitem__", spy)
    s = "[" + unit * (4000 // len(unit)) + "]"
    assert parser._loads(s) is parser._REPAIR_BOUND
    assert len(reads) == parser.MAX_REPAIR_READS + 1  # every read counted, then it stops
    a = parse_completion(f"<think>t</think><answer>{s}</answer>", mode="lenient")
    assert not a.ok and a.think_ok and a.error == parser.REPAIR_BOUND_ERROR


def test_repair_budget_survives_the_parser_rebuilding_its_text():
    # json_repair rebuilds its text by slicing and concatenating (e.g. when it splits an
    # object on a duplicate key): the pieces share the budget.
    text = parser._CountedText('[{"a":1,"a":2}]')
    text.budget = [100]
    rebuilt = text[:3] + "{" + text[3:]
    assert isinstance(rebuilt, parser._CountedText) and rebuilt.budget is text.budget
    assert text.budget[0] == 98
    assert ("x" + text).budget is text.budget
    import json_repair

    s = '[{"a":1,"a":2},' + "t]{" * 1300
    assert parser._loads(s) is parser._REPAIR_BOUND
    assert json_repair.loads(s[:60]) == parser._loads(s[:60])


def _near_json(n: int) -> str:
    """``n`` bbox+2pos instances with unquoted keys: near-JSON only the repair parser reads."""
    cells = [(100 * (k % 10), 100 * (k // 10)) for k in range(n)]  # disjoint boxes: none is de-duplicated
    insts = [{"bbox_2d": [x + 10, y + 10, x + 90, y + 90], "positive_points": [[x + 40, y + 40], [x + 60, y + 50]]}
             for x, y in cells]
    body = json.dumps(insts).replace('"bbox_2d"', "bbox_2d").replace('"positive_points"', "positive_points")
    return f"<think>t</think><answer>```json{body}```</answer>"


def test_an_answer_past_the_repair_bound_says_so_not_that_it_is_no_list():
    """Before: past MAX_REPAIR_READS the error read "answer is not a JSON list", the text
    of an answer that is no list. The bound lies at 60-71 instances of near-JSON, by the
    kind of repair (docs/benchmark.md, Limits); 40 are repaired, 120 are not."""
    ok = parse_completion(_near_json(40), mode="lenient", image_size=(1000, 1300))
    assert ok.ok and len(ok.prompts) == 40
    past = parse_completion(_near_json(120), mode="lenient", image_size=(1000, 1300))
    assert not past.ok and past.error == parser.REPAIR_BOUND_ERROR
    assert "12,000 character reads" in past.error and "\n" not in past.error
    too_long = "<answer>[" + "{bbox_2d: [1, 2, 30, 40]}, " * 1400 + "]</answer>"  # > MAX_REPAIR_CHARS
    assert len(too_long) > parser.MAX_REPAIR_CHARS
    assert parse_completion(too_long, mode="lenient").error == parser.REPAIR_BOUND_ERROR
    for no_list in ('{"bbox_2d": null}', "12", '"text"'):
        answer = parse_completion(f"<answer>```json{no_list}```</answer>", mode="lenient")
        assert answer.error == "answer is not a JSON list", no_list
