"""Refine episodes (issue 20, docs/refine.md): RefineSession's rules and the env's multi-turn form."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import t2s_env
from t2s_env import GeometricPrompt, Scorer, format_completion
from t2s_env.env import Think2SegEnv
from t2s_env.errors import ConfigError
from t2s_env.instructions import FEEDBACK, STOP_ANSWER, is_stop_answer
from t2s_env.refine import RefineSession, merge_prompts
from tests.datagen import write_rectangle_dataset

SIZE = 64
STOP = "<think> done </think>\n<answer>stop</answer>"


def box_completion(box, pos=None, neg=()):
    x1, y1, x2, y2 = box
    pos = pos if pos is not None else (((x1 + x2) / 2, (y1 + y2) / 2), ((x1 + x2) / 2 + 1, (y1 + y2) / 2))
    return format_completion([GeometricPrompt(box, tuple(pos), tuple(neg))], think="t")


def gt_box(gt):
    ys, xs = np.nonzero(gt)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def rect_gt(x1=10, y1=12, x2=40, y2=30, size=SIZE):
    gt = np.zeros((size, size), bool)
    gt[y1:y2, x1:x2] = True
    return gt


_ROOT: list = []


@pytest.fixture(scope="module", autouse=True)
def _rect_root(tmp_path_factory):
    """4 rectangle images (the first without target), shared by the module's envs."""
    root = tmp_path_factory.mktemp("refine_rects")
    write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=5)
    _ROOT[:] = [str(root)]
    yield
    _ROOT.clear()


def refine_env(**kw):
    kw.setdefault("segmenter", "box")
    return Think2SegEnv(root=_ROOT[0], split="val", image_size=SIZE, privileged=True, **kw)


# -- exact returns -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["replace", "add"])
def test_bad_box_then_gt_box_then_stop_returns_the_gt_box_reward(mode):
    env = refine_env(max_turns=3, refine_mode=mode)
    obs, info = env.reset(options={"index": 1})
    gt = info["gt_mask"]
    box = gt_box(gt)
    bad = (0, 0, 8, 8) if box[0] > 10 else (SIZE - 8, SIZE - 8, SIZE, SIZE)
    one_shot = env.scorer.score(obs["image"], info["gt_mask"], [box_completion(box)])[0].reward
    rewards, flags = [], []
    for c in (box_completion(bad), box_completion(box), STOP):
        obs, r, te, tr, info = env.step(c)
        rewards.append(r)
        flags.append((te, tr))
    if mode == "add":  # the GT box is a new instance: the bad box stays in force
        both = format_completion([GeometricPrompt(bad, ((1, 1), (2, 2))), GeometricPrompt(box, ((1, 1), (2, 2)))])
        one_shot = env.scorer.score(obs["image"], gt, [both])[0].reward
    assert flags == [(False, False), (False, False), (True, False)]
    assert rewards[2] == 0.0
    assert sum(rewards) == pytest.approx(one_shot, abs=1e-12)
    assert info["stopped"] is True and info["turn"] == 3 and len(info["iou_per_turn"]) == 3


def test_crafted_rectangle_exact_values():
    """Box segmenter on a 30×18 rectangle: a bad box (IoU 0), the GT box (IoU 1), stop."""
    s = Scorer("box")
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    gt = rect_gt()
    session = RefineSession(s, img, gt, max_turns=3)
    a = session.step(box_completion((50, 50, 60, 60)))
    b = session.step(box_completion((10, 12, 40, 30)))
    c = session.step(STOP)
    assert (a.reward, b.reward, c.reward) == (2.0, 2.0, 0.0)  # R1 = 0·2+1+1, R2 = 2+1+1
    assert session.iou_per_turn == [0.0, 1.0, 1.0]
    assert c.terminated and not c.truncated and session.done
    half = RefineSession(s, img, gt, max_turns=2)
    half.step(box_completion((10, 12, 40, 30)))
    t2 = half.step(box_completion((10, 12, 25, 30)))  # half the box: IoU 0.5, R2 = 3
    assert t2.reward == pytest.approx(3.0 - 4.0) and t2.truncated and not t2.terminated
    assert t2.info["iou_per_turn"] == [1.0, 0.5]


def test_turn_cost_and_overshoot_penalty():
    s = Scorer("box")
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    gt = rect_gt()
    session = RefineSession(s, img, gt, max_turns=3, turn_cost=0.25, overshoot_penalty=2.0)
    r = [session.step(box_completion((10, 12, 40, 30))).reward,
         session.step(box_completion((10, 12, 25, 30))).reward,
         session.step(box_completion((10, 12, 25, 30))).reward]
    assert r == pytest.approx([4.0, -1.0 - 0.25, 0.0 - 0.25 - 2.0 * 0.5])


# -- the telescoping identity --------------------------------------------------------------------

def test_telescoping_on_1000_random_episodes():
    rng = np.random.default_rng(0)
    s = Scorer("box")
    size = 32
    img = np.zeros((size, size, 3), np.uint8)
    for _ in range(1000):
        gt = np.zeros((size, size), bool)
        if rng.random() < 0.9:
            x1, y1 = rng.integers(0, 24, 2)
            gt[y1 : y1 + rng.integers(2, 8), x1 : x1 + rng.integers(2, 8)] = True
        k = int(rng.integers(1, 5))
        mode = ["replace", "add"][int(rng.integers(2))]
        cost = float(rng.choice([0.0, 0.1]))
        session = RefineSession(s, img, gt, max_turns=k, mode=mode, turn_cost=cost)
        total, scored_later = 0.0, 0
        while not session.done:
            u = rng.random()
            if u < 0.1:
                c = STOP
            elif u < 0.2:
                c = "no json here"
            elif u < 0.25:
                c = "<think> x </think>\n<answer>```json[]```</answer>"
            else:
                x1, y1 = rng.integers(0, 28, 2)
                c = box_completion((int(x1), int(y1), int(x1 + rng.integers(1, 8)), int(y1 + rng.integers(1, 8))))
            t = session.step(c)
            total += t.reward
            if session.turn > 1 and not t.stopped:
                scored_later += 1
        assert total == pytest.approx(session.last_score.reward - cost * scored_later, abs=1e-9)
        if mode == "replace" and session.last_score.parsed_ok and not t.stopped:
            # replace mode: R of the last scored turn is that completion's one-shot reward
            assert session.last_score.reward == pytest.approx(s.score(img, gt, [session.answers[-1]])[0].reward)


# -- K = 1 is today's env ------------------------------------------------------------------------

def test_k1_session_equals_one_shot_scorer():
    env = refine_env()
    s = env.scorer
    for index in range(4):
        obs, info = env.reset(options={"index": index})
        gt = info["gt_mask"]
        box = gt_box(gt) if gt.any() else (0, 0, 10, 10)
        for c in (box_completion(box), box_completion((0, 0, 20, 20)), "junk", "<answer>```json[]```</answer>", STOP):
            one = s.score(obs["image"], gt, [c])[0]
            turn = RefineSession(s, obs["image"], gt, max_turns=1).step(c)
            assert turn.reward == one.reward
            assert {k: turn.info[k] for k in one.info()} == one.info()
            assert turn.truncated or turn.terminated


def test_k1_env_identical_to_default():
    a, b = refine_env(), refine_env(max_turns=1, refine_mode="add")
    assert a.observation_space == b.observation_space
    for index in range(3):
        oa, ia = a.reset(options={"index": index})
        ob, ib = b.reset(options={"index": index})
        assert set(oa) == set(ob) == {"image", "question"}
        assert np.array_equal(oa["image"], ob["image"]) and ia.keys() == ib.keys()
        c = box_completion(gt_box(ia["gt_mask"]) if ia["gt_mask"].any() else (0, 0, 5, 5))
        ra, rb = a.step(c), b.step(c)
        assert ra[1:4] == rb[1:4] and ra[4] == rb[4]


# -- the env's multi-turn form -------------------------------------------------------------------

def test_check_env_refine_ids():
    for mode in ("replace", "add"):
        check_env(refine_env(max_turns=3, refine_mode=mode))
    env = t2s_env.make_vec("Think2Seg-Refine-EarthReason-v0", 1, segmenter="box", root=_ROOT[0], split="val",
                           image_size=SIZE)
    assert env.single_observation_space["turn"].n == 4
    env.close()


def test_observation_and_messages_hold_no_ground_truth():
    env = refine_env(max_turns=3)
    env.privileged = False
    obs, info = env.reset(options={"index": 1})
    assert set(obs) == {"image", "question", "mask", "overlay", "turn", "answers"}
    assert obs["turn"] == 0 and obs["answers"] == () and not obs["mask"].any()
    assert np.array_equal(obs["overlay"], obs["image"])
    assert "gt_mask" not in info
    first = box_completion((5, 6, 20, 30))
    obs, _, _, _, info = env.step(first)
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[6:30, 5:20] = 1
    assert np.array_equal(obs["mask"], expected)  # the prediction, not the GT
    assert obs["turn"] == 1 and obs["answers"] == (first,)
    assert "gt_mask" not in info
    assert info["messages"][-2:] == [
        {"role": "assistant", "content": first},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": FEEDBACK["replace"]}]},
    ]
    text = repr(info["messages"]).lower()
    assert "iou" not in text and "ground truth" not in text
    obs, _, te, tr, info = env.step(STOP)
    assert te and info["messages"][-1] == {"role": "assistant", "content": STOP}
    assert len(info["messages"]) == 5  # system, user, answer, feedback, stop


def test_feedback_strings_pinned():
    assert STOP_ANSWER == "stop"
    assert FEEDBACK["replace"] == (
        "This is the image with the mask your prompts produced, in semi-transparent green, and your prompts "
        "drawn on it (boxes red, positive points blue circles, negative points magenta crosses). Output the full "
        "corrected answer in the same format: every target instance with all of its prompts (a positive point "
        "where the mask misses the target, a negative point where it covers background). Any number of "
        "positive_points and negative_points per instance is allowed. If the mask is right, output "
        "<answer>stop</answer> instead."
    )
    assert FEEDBACK["add"] == (
        "This is the image with the mask your prompts produced, in semi-transparent green, and your prompts "
        "drawn on it (boxes red, positive points blue circles, negative points magenta crosses). Output only the "
        "prompts to add, in the same format: an instance with the same bbox_2d as one of yours adds its points to "
        "that instance (a positive point where the mask misses the target, a negative point where it covers "
        "background); any other instance is added as a new one. Any number of positive_points and "
        "negative_points per instance is allowed. If the mask is right, output <answer>stop</answer> instead."
    )
    for yes in ("<answer>stop</answer>", "<think>x</think> <answer> STOP </answer>", '<answer>```json"stop"```</answer>',
                "stop", "<answer>'Stop'</answer>"):
        assert is_stop_answer(yes), yes
    for no in ("<answer>[]</answer>", "stop now", "<answer>don't stop</answer>", None, 3):
        assert not is_stop_answer(no), no


def test_add_mode_click_refines_the_instance():
    p = GeometricPrompt((0, 0, 10, 10), ((1, 1), (2, 2)))
    click = GeometricPrompt((0, 0, 10, 10), ((5, 5),), ((8, 8),))
    other = GeometricPrompt((20, 20, 30, 30))
    merged = merge_prompts((p,), (click, other))
    assert merged == (GeometricPrompt((0, 0, 10, 10), ((1, 1), (2, 2), (5, 5)), ((8, 8),)), other)
    # a click in a later turn parses with any number of points, in strict mode too
    s = Scorer("box", parser_mode="strict")
    session = RefineSession(s, np.zeros((SIZE, SIZE, 3), np.uint8), rect_gt(), max_turns=3, mode="add")
    session.step(box_completion((10, 12, 40, 30)))
    t = session.step(format_completion([GeometricPrompt((10, 12, 40, 30), ((5, 5),))]))
    assert t.score.parsed_ok and t.info["prompts"] == [
        {"bbox_2d": [10, 12, 40, 30], "positive_points": [[25, 21], [26, 21], [5, 5]]}]


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None])
def test_bad_max_turns(value):
    with pytest.raises(ConfigError, match=r"max_turns must be an integer >= 1") as e:
        refine_env(max_turns=value)
    assert "\n" not in str(e.value)


def test_bad_refine_mode_and_costs():
    with pytest.raises(ConfigError, match=r"refine_mode must be one of replace, add, got 'merge'"):
        refine_env(max_turns=3, refine_mode="merge")
    with pytest.raises(ConfigError, match=r"turn_cost must be a finite number >= 0"):
        refine_env(max_turns=3, turn_cost=-1)


def test_step_after_the_end_raises():
    env = refine_env(max_turns=2)
    env.reset(options={"index": 0})
    env.step("a")
    _, _, te, tr, _ = env.step("b")
    assert tr and not te
    with pytest.raises(RuntimeError, match="ended after turn 2 of 2"):
        env.step("c")
    env.reset(options={"index": 0})
    env.step("a")  # a new episode goes on


def test_stop_at_turn_one_is_a_scored_one_shot_answer():
    s = Scorer("box")
    session = RefineSession(s, np.zeros((SIZE, SIZE, 3), np.uint8), rect_gt(), max_turns=3)
    t = session.step(STOP)
    assert not (t.terminated or t.truncated or t.stopped)
    assert t.info["iou"] == 0.0 and t.info["json_ok"] is False and not t.mask.any()
    assert t.reward == s.score(np.zeros((SIZE, SIZE, 3), np.uint8), rect_gt(), [STOP])[0].reward


def test_unparsable_later_answer_scores_format_zero_and_keeps_the_mask():
    s = Scorer("box")
    session = RefineSession(s, np.zeros((SIZE, SIZE, 3), np.uint8), rect_gt(), max_turns=4)
    a = session.step(box_completion((10, 12, 25, 30)))
    for junk in ("<think> x </think>\n<answer>```json[{oops```</answer>", 12345, ["not", "a", "message"], "\x00" * 50):
        t = session.step(junk) if not session.done else None
        if t is None:
            break
        assert t.info["reward_components"] == {"iou": 0.5, "json": 0.0, "think": 0.0}
        assert np.array_equal(t.mask, a.mask)
        assert t.info["iou_per_turn"][-1] == 0.5


def test_empty_answer_at_turn_one_ends_with_full_credit_on_empty_target():
    s = Scorer("box")
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    empty = "<think> none </think>\n<answer>```json[]```</answer>"
    t = RefineSession(s, img, np.zeros((SIZE, SIZE), bool), max_turns=3).step(empty)
    assert t.terminated and t.reward == 4.0
    t = RefineSession(s, img, rect_gt(), max_turns=3).step(empty)
    assert t.terminated and t.reward == 2.0


# -- vector envs ---------------------------------------------------------------------------------

def test_make_vec_episodes_of_different_lengths_score_every_action():
    venv = t2s_env.make_vec("Think2Seg-Refine-EarthReason-v0", 2, segmenter="box", root=_ROOT[0], split="val",
                            image_size=SIZE)
    venv.reset(seed=0)
    box = box_completion((0, 0, 30, 30))
    # env 0 stops at its 2nd turn; env 1 runs its 3 turns; each then starts anew in the same step
    plan = [(box, box), (STOP, box), (box, box), (box, box)]
    scored = []
    for actions in plan:
        obs, rewards, te, tr, info = venv.step(list(actions))
        ended = te | tr
        turns = [int(info["final_info"]["turn"][i]) if ended[i] else int(info["turn"][i]) for i in range(2)]
        scored.append(turns)
        assert np.all(np.isfinite(rewards))
        assert [int(t) for t in obs["turn"]] == [0 if ended[i] else turns[i] for i in range(2)]
    assert scored == [[1, 1], [2, 2], [1, 3], [2, 1]]
    venv.close()


def test_image_encoded_once_per_k3_episode():
    env = refine_env(max_turns=3)
    seg = env.scorer.segmenter
    calls = []
    original = seg.encode_batch

    def counting(images):
        calls.append(len(images))
        return original(images)

    seg.encode_batch = counting
    env.reset(options={"index": 1})
    for c in (box_completion((0, 0, 20, 20)), box_completion((5, 5, 30, 30)), box_completion((5, 5, 40, 40))):
        env.step(c)
    assert calls == [1]


def test_nothing_an_agent_writes_crashes_a_turn():
    rng = np.random.default_rng(7)
    s = Scorer("box", parser_mode="lenient")
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    good = box_completion((10, 12, 40, 30))
    weird = [None, b"\xff\xfe", 3.5, {"bbox_2d": [1, 2]}, [{"bbox_2d": [0, 0, 5, 5]}], [{"role": "assistant", "content": 5}],
             '<answer>```json[{"bbox_2d": [1e309, 0, 5, 5], "positive_points": [[1, 2]]}]```</answer>',
             '<answer>```json[{"positive_points": [[1, 2], [3]]}]```</answer>', '<answer>```json[{"positive_points": null}]```</answer>',
             '<answer>```json[{"bbox_2d": [1, 2, 3, 4], "negative_points": "x"}]```</answer>', "<answer>stop", "[" * 5000,
             '<answer>```json[{"bbox_2d": [-50, -50, 500, 500], "positive_points": []}]```</answer>']
    for mode in ("replace", "add"):
        for _ in range(60):
            session = RefineSession(s, img, rect_gt(), max_turns=4, mode=mode)
            session.step(good)
            while not session.done:
                t = session.step(weird[int(rng.integers(len(weird)))])
                assert np.isfinite(t.reward) and 0.0 <= t.info["iou"] <= 1.0
