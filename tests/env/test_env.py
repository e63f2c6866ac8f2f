"""The Gymnasium environment: API conformance, observations, rewards, vector envs, render."""

from __future__ import annotations

import functools
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import t2s_env  # noqa: F401  (registers the environments)
from t2s_env.env import Think2SegEnv
from t2s_env.errors import ConfigError
from t2s_env.instructions import get_variant
from t2s_env.prompt import GeometricPrompt
from tests.datagen import rectangle_mask, write_rectangle_dataset, write_sample

ENV_ID = "t2s_env:Think2Seg-EarthReason-v0"
STEP_KEYS = {"iou", "intersection", "union", "json_ok", "think_ok", "gt_empty", "pred_empty", "prompts",
             "reward_components"}


@pytest.fixture(scope="module")
def rect_data(tmp_path_factory):
    """(root, {id: rects}) for 4 square 840 images, the first without target."""
    root = tmp_path_factory.mktemp("env_rects")
    info = write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=3)
    return root, {d["id"]: d["rects"] for d in info}


def make_env(root, **kw):
    kw.setdefault("segmenter", "box")
    return Think2SegEnv(root=str(root), split="val", **kw)


def prompt_for(rect):
    x1, y1, x2, y2 = rect
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return GeometricPrompt((x1, y1, x2, y2), ((cx, cy), (cx + 1, cy)))


def completion_for(rects, think="looking"):
    body = json.dumps([prompt_for(r).to_dict() for r in rects])
    return f"<think>{think}</think>\n<answer>```json{body}```</answer>"


# -- API conformance ----------------------------------------------------------------------


def test_check_env_earthreason(rect_data):
    env = gym.make(ENV_ID, root=str(rect_data[0]), split="val", segmenter="box")
    check_env(env.unwrapped)
    env.close()


def test_check_env_synthetic():
    """Needs the synthetic generator (t2s_env/datasets/synthetic.py)."""
    env = gym.make("t2s_env:Think2Seg-Synthetic-v0", segmenter="box")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (840, 840, 3)
    assert env.observation_space.contains(obs)
    space = env.observation_space["question"]
    assert all(space.contains(q) for s in env.unwrapped.dataset for q in s.questions)
    env.close()


def test_gym_make_and_registration(rect_data):
    assert "Think2Seg-EarthReason-v0" in gym.registry
    assert "Think2Seg-Synthetic-v0" in gym.registry
    env = gym.make(ENV_ID, root=str(rect_data[0]), split="val", segmenter="box")
    assert isinstance(env.unwrapped, Think2SegEnv)
    obs, info = env.reset(seed=1)
    _, reward, terminated, truncated, _ = env.step("<think>x</think><answer>```json[]```</answer>")
    assert terminated and not truncated
    env.close()


# -- reset / observation ------------------------------------------------------------------


def test_reset_observation_and_info(rect_data):
    env = make_env(rect_data[0])
    obs, info = env.reset(seed=0)
    assert set(obs) == {"image", "question"}
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (840, 840, 3)
    assert isinstance(obs["question"], str) and obs["question"]
    assert env.observation_space["question"].contains(obs["question"])
    assert env.observation_space.contains(obs)
    sample = next(s for s in env.dataset if s.sample_id == info["sample_id"])
    assert obs["question"] == sample.question
    assert "gt_mask" not in info
    msgs = info["messages"]
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"][0] == {"type": "image"}
    assert msgs[1]["content"][1]["text"] == get_variant("bbox+2pos").user_text(obs["question"])


def test_privileged_gt_mask(rect_data):
    root, rects = rect_data
    env = make_env(root, privileged=True)
    for sid, rs in rects.items():
        _, info = env.reset(options={"sample_id": sid})
        m = info["gt_mask"]
        assert m.dtype == bool and m.shape == (840, 840)
        np.testing.assert_array_equal(m, rectangle_mask(840, 840, rs))


def test_question_with_punctuation_is_in_space(tmp_path):
    q = "Where could ships be repaired, e.g. after a storm? (“dry docks” – 100 m…)"
    write_sample(tmp_path, "val", "p", np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), [q])
    env = make_env(tmp_path)
    obs, _ = env.reset(seed=0)
    assert obs["question"] == q
    assert env.observation_space.contains(obs)


# -- step ---------------------------------------------------------------------------------


def test_step_info_and_perfect_reward(rect_data):
    root, rects = rect_data
    env = make_env(root)
    sid = [k for k, v in rects.items() if v][0]
    env.reset(options={"sample_id": sid})
    obs, reward, terminated, truncated, info = env.step(completion_for(rects[sid]))
    assert terminated is True and truncated is False
    assert STEP_KEYS <= set(info)
    assert reward == pytest.approx(4.0)
    assert info["iou"] == 1.0 and info["json_ok"] and info["think_ok"]
    assert not info["gt_empty"] and not info["pred_empty"]
    assert info["intersection"] == info["union"] == rectangle_mask(840, 840, rects[sid]).sum()
    assert info["reward_components"] == {"iou": 1.0, "json": 1.0, "think": 1.0}
    assert len(info["prompts"]) == len(rects[sid])
    assert obs["image"].shape == (840, 840, 3)


def test_step_on_empty_target(rect_data):
    root, rects = rect_data
    env = make_env(root)
    sid = [k for k, v in rects.items() if not v][0]
    env.reset(options={"sample_id": sid})
    _, reward, _, _, info = env.step("<think>nothing</think><answer>```json[]```</answer>")
    assert reward == pytest.approx(4.0) and info["gt_empty"] and info["pred_empty"]
    env.reset(options={"sample_id": sid})
    _, reward, _, _, info = env.step(completion_for([(0, 0, 10, 10)]))
    assert reward == pytest.approx(2.0) and not info["pred_empty"]


def test_step_garbage_and_random_text(rect_data):
    env = make_env(rect_data[0])
    env.action_space.seed(0)
    for action in ["", "garbage", "<think>", env.action_space.sample()]:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(action)
        assert 0.0 <= reward <= 4.0 and terminated
        assert STEP_KEYS <= set(info)


@pytest.mark.parametrize("kind", ["prompt", "dict", "list_dicts", "list_prompts", "single_in_list"])
def test_structured_actions(rect_data, kind):
    root, rects = rect_data
    env = make_env(root)
    sid = max(rects, key=lambda k: len(rects[k]))
    rs = rects[sid]
    prompts = [prompt_for(r) for r in rs]
    action = {
        "prompt": prompts[0],
        "dict": prompts[0].to_dict(),
        "list_dicts": [p.to_dict() for p in prompts],
        "list_prompts": prompts,
        "single_in_list": [prompts[0]],
    }[kind]
    env.reset(options={"sample_id": sid})
    _, reward, terminated, _, info = env.step(action)
    assert terminated and info["json_ok"]
    gt = rectangle_mask(840, 840, rs)
    if kind in ("list_dicts", "list_prompts"):
        assert info["iou"] == pytest.approx(1.0) and reward == pytest.approx(4.0)
    else:
        want = rectangle_mask(840, 840, rs[:1])
        assert info["iou"] == pytest.approx((want & gt).sum() / (want | gt).sum())


def test_step_requires_reset(rect_data):
    env = make_env(rect_data[0])
    with pytest.raises(RuntimeError):
        env.step("x")
    env.reset(seed=0)
    env.step("x")
    with pytest.raises(RuntimeError):
        env.step("x")  # one-step episodes


def test_reward_weights_and_variant(rect_data):
    root, rects = rect_data
    sid = [k for k, v in rects.items() if v][0]
    env = make_env(root, prompt_variant="bbox", reward_weights={"iou": 1.0, "json": 0.0, "think": 0.0})
    _, info = env.reset(options={"sample_id": sid})
    assert info["messages"][1]["content"][1]["text"] == get_variant("bbox").user_text(env.unwrapped._obs["question"])
    body = json.dumps([{"bbox_2d": list(r)} for r in rects[sid]])
    _, reward, _, _, info = env.step(f"<think>x</think><answer>```json{body}```</answer>")
    assert reward == pytest.approx(1.0) and info["reward_components"]["json"] == 1.0


# -- seeding and options ------------------------------------------------------------------


def test_reset_seed_is_deterministic(rect_data):
    root = rect_data[0]
    a, b = make_env(root), make_env(root)
    ids_a = [a.reset(seed=s)[1]["sample_id"] for s in range(12)]
    ids_b = [b.reset(seed=s)[1]["sample_id"] for s in range(12)]
    assert ids_a == ids_b
    assert len(set(ids_a)) > 1
    o1, _ = a.reset(seed=5)
    o2, _ = b.reset(seed=5)
    np.testing.assert_array_equal(o1["image"], o2["image"])
    assert o1["question"] == o2["question"]
    # the constructor seed seeds the first reset
    c, d = make_env(root, seed=9), make_env(root)
    assert c.reset()[1]["sample_id"] == d.reset(seed=9)[1]["sample_id"]


def test_reset_options(rect_data):
    root, rects = rect_data
    env = make_env(root)
    for i, s in enumerate(env.dataset):
        _, info = env.reset(options={"index": i})
        assert info["sample_id"] == s.sample_id
    sid = sorted(rects)[2]
    obs, info = env.reset(options={"sample_id": sid})
    assert info["sample_id"] == sid
    with pytest.raises(ConfigError):
        env.reset(options={"sample_id": "nope"})
    with pytest.raises(ConfigError):
        env.reset(options={"index": len(env.dataset)})


# -- vector envs --------------------------------------------------------------------------


def _question_of(root, sid):
    return json.loads((root / "val" / "QAs" / f"{sid}.json").read_text())["questions"][0]


def test_sync_vector_env(rect_data):
    root, rects = rect_data
    venv = gym.vector.SyncVectorEnv([functools.partial(make_env, root) for _ in range(2)])
    obs, info = venv.reset(seed=[0, 1])
    assert obs["image"].shape == (2, 840, 840, 3)
    assert len(obs["question"]) == 2
    for q, sid in zip(obs["question"], info["sample_id"]):
        assert q == _question_of(root, sid)
    actions = tuple(completion_for(rects[sid]) if rects[sid] else "<think>x</think><answer>```json[]```</answer>"
                    for sid in info["sample_id"])
    obs, rewards, terms, truncs, info = venv.step(actions)
    assert rewards == pytest.approx([4.0, 4.0])
    assert terms.all()
    venv.close()


@pytest.mark.slow
def test_async_vector_env_without_shared_memory(rect_data):
    root, rects = rect_data
    fns = [functools.partial(gym.make, ENV_ID, root=str(root), split="val", segmenter="box") for _ in range(2)]
    venv = gym.vector.AsyncVectorEnv(fns, shared_memory=False, context="spawn")
    try:
        for seeds in ([0, 1], [2, 3]):
            obs, info = venv.reset(seed=seeds)
            for q, sid in zip(obs["question"], info["sample_id"]):
                assert q == _question_of(root, sid)
        sids = list(info["sample_id"])
        actions = tuple(completion_for(rects[s]) if rects[s] else "<think>x</think><answer>```json[]```</answer>"
                        for s in sids)
        obs, rewards, terms, _, info = venv.step(actions)
        assert rewards == pytest.approx([4.0, 4.0]) and terms.all()
    finally:
        venv.close()


# -- render and frame ---------------------------------------------------------------------


def test_render(rect_data):
    root, rects = rect_data
    sid = [k for k, v in rects.items() if v][0]
    env = make_env(root, render_mode="rgb_array")
    _, _ = env.reset(options={"sample_id": sid})
    before = env.render()
    assert isinstance(before, np.ndarray) and before.dtype == np.uint8 and before.shape == (840, 840, 3)
    x1, y1, x2, y2 = rects[sid][0]
    env.step(completion_for([(x1, y1, (x1 + x2) // 2, y2)]))
    after = env.render()
    assert after.shape == (840, 840, 3) and after.dtype == np.uint8
    assert not np.array_equal(before, after)
    # the predicted region is tinted: pixels inside the predicted box changed
    inner = (slice(y1 + 5, y2 - 5), slice(x1 + 5, (x1 + x2) // 2 - 5))
    assert not np.array_equal(before[inner], after[inner])
    assert make_env(root).render() is None  # no render_mode
    with pytest.raises(ConfigError):
        make_env(root, render_mode="human")


@pytest.mark.parametrize("size", [420, 64])
def test_image_size_option(rect_data, size):
    env = make_env(rect_data[0], image_size=size, privileged=True)
    assert env.observation_space["image"].shape == (size, size, 3)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (size, size, 3) and obs["image"].dtype == np.uint8
    assert info["gt_mask"].shape == (size, size)
    assert env.observation_space.contains(obs)
    _, reward, _, _, info = env.step("<think>x</think><answer>```json[]```</answer>")
    assert 0 <= reward <= 4


def test_frame_resize_filters(tmp_path):
    """Image resized with LANCZOS, mask with NEAREST, to the square frame."""
    h, w = 60, 100
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[7:23, 13:61] = True
    mask[40:43, 80:97] = True
    write_sample(tmp_path, "val", "odd", image, mask, ["q"])
    for size in (840, 128):
        env = make_env(tmp_path, privileged=True, image_size=size)
        obs, info = env.reset(seed=0)
        want_img = np.asarray(Image.fromarray(image).resize((size, size), Image.LANCZOS))
        np.testing.assert_array_equal(obs["image"], want_img)
        want_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 0
        np.testing.assert_array_equal(info["gt_mask"], want_mask)
        # prompts are in the frame: the frame boxes of the two rectangles (one in the top
        # half, one in the bottom half) score a perfect IoU with the `box` segmenter
        lab = info["gt_mask"]
        rects = []
        for rows, off in ((lab[: size // 2], 0), (lab[size // 2 :], size // 2)):
            yy, xx = np.nonzero(rows)
            rects.append((int(xx.min()), int(yy.min()) + off, int(xx.max()) + 1, int(yy.max()) + off + 1))
        _, reward, _, _, step_info = env.step(completion_for(rects))
        assert step_info["iou"] == pytest.approx(1.0) and reward == pytest.approx(4.0)


def test_empty_gt_is_decided_after_resize(tmp_path):
    """SPEC §4: a GT is empty when it is all zeros *after* the resize to the frame."""
    n, size = 50, 16
    # find a source pixel that NEAREST down-sampling skips
    probe = np.arange(n * n, dtype=np.int32).reshape(n, n)
    kept = set(np.asarray(Image.fromarray(probe).resize((size, size), Image.NEAREST)).ravel().tolist())
    r, c = divmod(next(k for k in range(n * n) if k not in kept), n)
    mask = np.zeros((n, n), dtype=bool)
    mask[r, c] = True
    write_sample(tmp_path, "val", "tiny", np.zeros((n, n, 3), np.uint8), mask, ["q"])
    env = make_env(tmp_path, image_size=size, privileged=True)
    _, info = env.reset(seed=0)
    assert not info["gt_mask"].any()
    _, reward, _, _, info = env.step("<think>x</think><answer>```json[]```</answer>")
    assert info["gt_empty"] and reward == pytest.approx(4.0)


# -- frame cache, bounds, repr --------------------------------------------------------------


def test_frame_cache_gives_identical_outputs_and_stays_bounded(rect_data):
    root, rects = rect_data
    cached, uncached = make_env(root, privileged=True), make_env(root, privileged=True, frame_cache_mb=0)
    action = completion_for([(100, 100, 400, 400)])
    for seed in [0, 1, 2, 0, 1, 2, 3, 3]:
        (o1, i1), (o2, i2) = cached.reset(seed=seed), uncached.reset(seed=seed)
        np.testing.assert_array_equal(o1["image"], o2["image"])
        np.testing.assert_array_equal(i1["gt_mask"], i2["gt_mask"])
        s1, s2 = cached.step(action), uncached.step(action)
        np.testing.assert_array_equal(s1[0]["image"], s2[0]["image"])
        assert s1[1:4] == s2[1:4] and s1[4]["iou"] == s2[4]["iou"]
        # what the user gets is new memory on every call (gymnasium's contract)
        assert not np.shares_memory(o1["image"], s1[0]["image"])
        assert not np.shares_memory(o1["image"], cached.frame_cache.get(cached._index[i1["sample_id"]]).image)
    assert len(uncached.frame_cache) == 0 and 1 <= len(cached.frame_cache) <= len(cached.dataset)
    per_frame = 840 * 840 * 3 + 840 * 840
    small = make_env(root, frame_cache_mb=2.5 * per_frame / 2**20)
    for i in range(len(small.dataset)):
        small.reset(options={"index": i})
    assert len(small.frame_cache) == 2 and small.frame_cache.nbytes <= small.frame_cache.max_bytes
    with pytest.raises(ConfigError, match="frame_cache_mb"):
        make_env(root, frame_cache_mb=-1)


def test_envs_framing_the_same_data_share_one_frame_cache(rect_data, monkeypatch):
    """The sub-envs of a sync vector env decode each image once between them, not once each."""
    import t2s_env.env as env_module

    root, _ = rect_data
    loads = []
    real = env_module.load_framed
    monkeypatch.setattr(env_module, "load_framed", lambda *a, **k: loads.append(a[0].sample_id) or real(*a, **k))
    a, b = make_env(root, privileged=True, image_size=128), make_env(root, privileged=True, image_size=128)
    assert a.frame_cache is b.frame_cache
    n = len(a.dataset)
    for i in range(n):
        (oa, ia), (ob, ib) = a.reset(options={"index": i}), b.reset(options={"index": i})
        np.testing.assert_array_equal(oa["image"], ob["image"])
        np.testing.assert_array_equal(ia["gt_mask"], ib["gt_mask"])
        assert not np.shares_memory(oa["image"], ob["image"])
    assert len(loads) == n  # each image decoded once for both envs
    # another frame, another bound or a dataset object of one's own: a cache of its own
    assert make_env(root, image_size=96).frame_cache is not a.frame_cache
    assert make_env(root, image_size=128, frame_cache_mb=1).frame_cache is not a.frame_cache
    assert Think2SegEnv(dataset=a.dataset, segmenter="box", image_size=128).frame_cache is not a.frame_cache
    assert len(make_env(root, image_size=128, frame_cache_mb=0).frame_cache) == 0


def test_image_size_has_an_upper_bound(rect_data):
    for bad in (5000, 8, True, 840.0):
        with pytest.raises(ConfigError, match=r"image_size must be an integer in \[16, 4096\]"):
            make_env(rect_data[0], image_size=bad)


def test_observation_space_prints_short(rect_data):
    env = make_env(rect_data[0])
    text = repr(env.observation_space) + str(env.action_space)
    assert len(text) < 400, len(text)
    assert "Text(0, 2048" in text and "printable" in text
    assert env.observation_space["question"].contains("Où sont les navires? (“dry docks” – 100 m…)")
