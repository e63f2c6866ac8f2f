"""The protocol's prompt strings (SPEC §2), pinned in the repository so this runs in every
checkout: ``tests/data/spec_prompt_strings.json`` holds SPEC §2's system and user text
byte for byte (two spaces after "1." and "2.", a trailing space after "</think>").

The strings are compared with what the library sends, never regenerated from it, so an
edit to ``t2s_env/instructions.py`` that changes one byte fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from t2s_env.instructions import DEFAULT_VARIANT, SYSTEM_PROMPT, build_messages, get_variant, referring_question

PINNED_PATH = Path(__file__).parents[1] / "data" / "spec_prompt_strings.json"
PINNED = json.loads(PINNED_PATH.read_text(encoding="utf-8"))
# The SPEC text itself, when a checkout sits next to it (the project's shared folder).
SPEC_PATH = Path(os.environ.get("T2S_SPEC", Path(__file__).resolve().parents[3] / "shared" / "SPEC.md"))

# sha256 of the pinned strings, so that the data file cannot drift along with the code
SYSTEM_SHA256 = "f4e62d7bd301ff23df653df5fe88d67abd341a52c5e8e9fe7ef2a7d0956ece2e"
USER_SHA256 = "aabad4f62a4663a6d4ce16d365cf7e7de39ebaec317208bce0b211145a1b2029"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_pinned_strings_are_the_spec_bytes():
    assert _sha(PINNED["system"]) == SYSTEM_SHA256
    assert _sha(PINNED["user"]) == USER_SHA256
    user = PINNED["user"]
    assert "\n1.  `bbox_2d`" in user and "\n2.  `positive_points`" in user
    assert "i.e. <think> thinking process here </think> \n<answer>" in user
    assert user.count("{Question}") == 1


def test_library_sends_the_pinned_strings():
    assert SYSTEM_PROMPT == PINNED["system"]
    question = 'Where could ships be repaired? {not a field} "quoted"'
    assert get_variant(DEFAULT_VARIANT).user_text(question) == PINNED["user"].replace("{Question}", question)
    system, user = build_messages(question)
    assert system["content"][0]["text"] == PINNED["system"]
    assert user["content"] == [{"type": "image"}, {"type": "text", "text": PINNED["user"].replace("{Question}", question)}]


def test_dataset_question_templates():
    assert referring_question("rrsisd", "the plane on the left") == "the plane on the left."  # SPEC §2
    assert referring_question("refsegrs", " a  car\tparked ") == "a car parked"
    assert referring_question("risbench", "the large  white ship") == "the large  white ship"
    assert referring_question("earthreason", "Where?") == "Where?"


@pytest.mark.skipif(not SPEC_PATH.is_file(), reason="SPEC.md is not next to this checkout; the pinned copy is checked above")
def test_pinned_copy_matches_the_spec_file():
    text = SPEC_PATH.read_text(encoding="utf-8")

    def block(after: str) -> str:
        start = text.index(after)
        open_ = text.index("\n```\n", start) + len("\n```\n")
        return text[open_:text.index("\n```\n", open_)]

    assert block("System text:") == PINNED["system"]
    assert block("User text (") == PINNED["user"]
