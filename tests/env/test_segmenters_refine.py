"""Segmenters that refine: ``decode_with_state`` with the last turn's :class:`MaskState`.

- previous=None gives exactly ``decode``'s masks, for every segmenter (K = 1 unchanged);
- SAM2 passes the matched instance's previous low-res logits as ``mask_input``: the masks and
  logits equal ``SAM2ImagePredictor.predict(mask_input=...)``'s, turn after turn;
- SAM3 passes them as ``input_masks`` (the tracker's own refinement input);
- GrabCut "connected" refines from the previous mask by connected edits, "mask" initialises
  GrabCut from it; the box segmenter ignores ``previous``;
- the image is encoded once over a K = 3 episode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2s_env.errors import ConfigError
from t2s_env.prompt import GeometricPrompt as G
from t2s_env.prompt import anchor
from t2s_env.segmenters import BoxSegmenter, MaskState, make_segmenter
from t2s_env.segmenters.grabcut import GrabCutSegmenter

S = 160


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """Two bright blobs joined by a thin bridge on a textured background, and their mask."""
    rng = np.random.default_rng(0)
    img = (np.array([60, 110, 70]) + rng.integers(0, 35, (S, S, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:S, :S]
    gt = (((xx + 0.5 - 60) / 30) ** 2 + ((yy + 0.5 - 70) / 20) ** 2 <= 1)
    gt |= (((xx + 0.5 - 110) / 16) ** 2 + ((yy + 0.5 - 100) / 16) ** 2 <= 1)
    img[gt] = (np.array([205, 190, 175]) + rng.integers(0, 25, (int(gt.sum()), 3))).astype(np.uint8)
    return img, gt


SETS = [
    [G(box=(28, 48, 94, 94))],
    [G(box=(28, 48, 94, 94), positive_points=((60, 70),))],
    [G(positive_points=((110, 100), (60, 70)))],
    [G(box=(28, 48, 94, 94)), G(box=(92, 82, 128, 118), negative_points=((5, 5),))],
    [],
]


def iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- every segmenter: previous=None is decode ------------------------------------------------

@pytest.mark.parametrize("spec", ["box", "grabcut"])
def test_no_previous_equals_decode(scene, spec):
    img, _ = scene
    seg = make_segmenter(spec)
    emb = seg.encode(img)
    masks, states = seg.decode_with_state(emb, SETS, None)
    assert torch.equal(masks, seg.decode(emb, SETS))
    assert len(states) == len(SETS)
    for k, (prompts, st) in enumerate(zip(SETS, states)):
        assert np.array_equal(st.mask, masks[k].numpy())
        assert set(st.instances) == {anchor(p) for p in prompts}
        for p in prompts:
            assert np.array_equal(st.instances[anchor(p)].mask, seg.decode(emb, [[p]])[0].numpy())


def test_box_segmenter_ignores_previous(scene):
    img, gt = scene
    seg = BoxSegmenter()
    emb = seg.encode(img)
    bogus = [MaskState(~gt, {anchor(p): None for p in s}) for s in SETS]  # any state at all
    a, _ = seg.decode_with_state(emb, SETS, None)
    b, _ = seg.decode_with_state(emb, SETS, bogus)
    assert torch.equal(a, b)


# -- grabcut ---------------------------------------------------------------------------------

def episode(seg, img, prompts_per_turn):
    """Decode a list of turns' prompt sets, each from the last turn's state."""
    emb = seg.encode(img)
    state, out = None, []
    for prompts in prompts_per_turn:
        masks, (state,) = seg.decode_with_state(emb, [prompts], None if state is None else [state])
        assert np.array_equal(masks[0].numpy(), state.mask)
        out.append(state)
    return out


def test_grabcut_connected_positive_click_adds_only_its_region(scene):
    img, gt = scene
    seg = GrabCutSegmenter()
    box = (28, 48, 128, 118)  # both blobs
    first = G(box=box)
    second = G(box=box, positive_points=((110, 100),))
    t1, t2 = episode(seg, img, [[first], [second]])
    fresh = seg.decode(seg.encode(img), [[second]])[0].numpy()
    added = t2.mask & ~t1.mask
    assert not (t1.mask & ~t2.mask).any()  # a positive click removes nothing
    assert t2.mask[100, 110]  # the clicked pixel is in
    assert not (added & ~fresh).any()  # what it adds GrabCut found
    # the edit is one connected region, touching the click
    import cv2

    n, labels = cv2.connectedComponents(added.astype(np.uint8), connectivity=8)
    assert n <= 2 and (not added.any() or labels[100, 110] == 1)


def test_grabcut_connected_negative_click_removes_its_region(scene):
    img, gt = scene
    seg = GrabCutSegmenter()
    box = (20, 40, 140, 130)  # generous: the first mask spills into the background
    t1, t2 = episode(seg, img, [[G(box=box)], [G(box=box, negative_points=((110, 100),))]])
    assert not (t2.mask & ~t1.mask).any()  # a negative click adds nothing
    assert not t2.mask[100, 110]  # the clicked pixel is gone


def test_grabcut_same_prompt_again_keeps_the_mask_and_a_new_box_starts_afresh(scene):
    img, _ = scene
    for mode in ("connected", "mask"):
        seg = GrabCutSegmenter(refine=mode)
        p = G(box=(28, 48, 94, 94))
        t1, t2 = episode(seg, img, [[p], [p]])
        assert np.array_equal(t1.mask, t2.mask)
        q = G(box=(90, 80, 130, 120))
        _, t3 = episode(seg, img, [[p], [q]])
        assert np.array_equal(t3.mask, seg.decode(seg.encode(img), [[q]])[0].numpy())


def test_grabcut_mask_mode_initialises_from_the_previous_mask(scene, monkeypatch):
    img, gt = scene
    seg = GrabCutSegmenter(refine="mask")
    seen = []
    real = seg._grabcut

    def spy(image, items, side, prior=None):
        seen.append(prior)
        return real(image, items, side, prior)

    monkeypatch.setattr(seg, "_grabcut", spy)
    box = (28, 48, 128, 118)
    t1, t2 = episode(seg, img, [[G(box=box)], [G(box=box, positive_points=((110, 100),))]])
    assert seen[0] is None and any(s is not None and np.array_equal(s, t1.mask) for s in seen[1:])
    assert t2.mask[100, 110]


def test_grabcut_refine_option():
    assert make_segmenter("grabcut").describe()["refine"] == "connected"
    with pytest.raises(ConfigError, match=r"refine='x'.*connected, mask"):
        make_segmenter("grabcut", refine="x")


def test_previous_of_the_wrong_length_is_one_clear_error(scene):
    img, _ = scene
    seg = GrabCutSegmenter()
    with pytest.raises(ValueError, match="previous has 1 states for 2 prompt sets"):
        seg.decode_with_state(seg.encode(img), [[], []], [None])


def test_grabcut_encodes_once_over_three_turns(scene, monkeypatch):
    img, gt = scene
    seg = GrabCutSegmenter()
    calls = []
    real = seg.encode_batch
    monkeypatch.setattr(seg, "encode_batch", lambda images: calls.append(len(images)) or real(images))
    box = (28, 48, 128, 118)
    episode(seg, img, [[G(box=box)], [G(box=box, positive_points=((110, 100),))],
                       [G(box=box, positive_points=((110, 100),), negative_points=((30, 50),))]])
    assert calls == [1]


# -- sam2 ------------------------------------------------------------------------------------

sam2 = pytest.importorskip("sam2")


@pytest.fixture(scope="module")
def tiny():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    from t2s_env.segmenters.sam2_segmenter import SAM2Segmenter

    yield SAM2Segmenter("tiny", device="cpu", allow_random_weights=True, image_size=256)
    torch.set_num_threads(n)


@pytest.mark.slow
def test_sam2_no_previous_equals_decode_and_keeps_the_predictors_logits(tiny, scene):
    img, _ = scene
    emb = tiny.encode(img)
    masks, states = tiny.decode_with_state(emb, SETS, None)
    assert torch.equal(masks, tiny.decode(emb, SETS))
    pred = tiny.predictor()
    with tiny.context():
        pred.set_image(img)
        p = SETS[1][0]
        m, _, low = pred.predict(box=np.asarray(p.box, np.float32), point_coords=np.asarray(p.positive_points, np.float32),
                                 point_labels=np.ones(1, np.int32), multimask_output=False)
    inst = states[1].instances[anchor(p)]
    assert tuple(inst.data.shape) == (1, 64, 64) == low.shape  # (1, S/4, S/4), as predict returns
    assert torch.equal(inst.data, torch.from_numpy(low))
    assert np.array_equal(inst.mask, m[0] > 0)


@pytest.mark.slow
def test_sam2_refines_exactly_as_the_predictor_with_mask_input(tiny, scene):
    """Three turns of clicks on one instance: each turn's mask and logits are those of
    ``SAM2ImagePredictor.predict(..., mask_input=last logits, multimask_output=False)``."""
    img, _ = scene
    box = (28, 48, 128, 118)
    turns = [G(box=box), G(box=box, positive_points=((110, 100),)),
             G(box=box, positive_points=((110, 100),), negative_points=((30, 50),))]
    emb = tiny.encode(img)
    pred = tiny.predictor()
    state, low = None, None
    with tiny.context():
        pred.set_image(img)
    for p in turns:
        masks, (state,) = tiny.decode_with_state(emb, [[p]], None if state is None else [state])
        pts = list(p.positive_points) + list(p.negative_points)
        with tiny.context():
            m, _, low = pred.predict(
                point_coords=np.asarray(pts, np.float32) if pts else None,
                point_labels=np.asarray([1] * len(p.positive_points) + [0] * len(p.negative_points), np.int32) if pts else None,
                box=np.asarray(p.box, np.float32), mask_input=low, multimask_output=False)
        assert np.array_equal(masks[0].numpy(), m[0] > 0)
        assert torch.equal(state.instances[anchor(p)].data, torch.from_numpy(low))


@pytest.mark.slow
def test_sam2_mask_input_changes_the_mask_and_unmatched_instances_decode_afresh(tiny, scene):
    img, _ = scene
    emb = tiny.encode(img)
    a, b = G(box=(28, 48, 94, 94)), G(box=(92, 82, 128, 118))
    _, (s1,) = tiny.decode_with_state(emb, [[a]], None)
    used = []
    real = tiny.decoder_logits
    tiny_calls = lambda e, ps, mask_input=None: used.append(mask_input is not None) or real(e, ps, mask_input)  # noqa: E731
    tiny.decoder_logits = tiny_calls
    try:
        m2, (s2,) = tiny.decode_with_state(emb, [[a, b]], [s1])
    finally:
        del tiny.decoder_logits
    assert sorted(used) == [False, True]  # a refines from its logits, b (new anchor) does not
    assert np.array_equal(s2.instances[anchor(b)].mask, tiny.decode(emb, [[b]])[0].numpy())
    # the logits fed back are not ignored: the refined mask of `a` differs from a fresh decode
    # of random weights' logits somewhere at the low resolution
    assert not torch.equal(s2.instances[anchor(a)].data, s1.instances[anchor(a)].data)


@pytest.mark.slow
def test_sam2_encodes_once_over_three_turns(tiny, scene, monkeypatch):
    img, _ = scene
    calls = []
    real = tiny.encode_batch
    monkeypatch.setattr(tiny, "encode_batch", lambda images: calls.append(len(images)) or real(images))
    box = (28, 48, 128, 118)
    emb = tiny.encode(img)
    state = None
    for p in (G(box=box), G(box=box, positive_points=((110, 100),)), G(box=box, positive_points=((110, 100), (60, 70)))):
        _, (state,) = tiny.decode_with_state(emb, [[p]], None if state is None else [state])
    assert calls == [1]


# -- sam3 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sam3_refines_with_its_previous_logits(scene):
    pytest.importorskip("transformers")
    from t2s_env.segmenters.sam3_segmenter import SAM3Segmenter, tiny_config

    img, _ = scene
    seg = SAM3Segmenter(config=tiny_config(112), allow_random_weights=True, device="cpu")
    emb = seg.encode(img)
    masks, states = seg.decode_with_state(emb, SETS, None)
    assert torch.equal(masks, seg.decode(emb, SETS))
    a = SETS[1][0]
    seen = []
    real = seg.model.forward

    def spy(*args, **kw):
        seen.append(kw.get("input_masks"))
        return real(*args, **kw)

    seg.model.forward = spy
    try:
        b = G(box=a.box, positive_points=a.positive_points + ((110, 100),))
        m2, (s2,) = seg.decode_with_state(emb, [[b]], [states[1]])
    finally:
        del seg.model.forward
    prev = states[1].instances[anchor(a)].data
    assert len(seen) == 1 and seen[0] is not None and torch.equal(seen[0][0].float(), prev)
    assert s2.instances[anchor(b)].data.shape == prev.shape
    assert np.array_equal(m2[0].numpy(), s2.mask)


# -- a K = 3 RefineSession: one encode, every turn through decode_with_state ----------------

def session_episode(seg, img, gt, mode="replace"):
    """Three turns of the oracle clicker in a RefineSession; the encode and refine calls."""
    from t2s_env import Scorer
    from t2s_env.refine import RefineSession
    from think2seg.agents import make_agent

    encodes, refines = [], []
    real_encode, real_refine = seg.encode_batch, seg.decode_with_state
    seg.encode_batch = lambda images: encodes.append(len(images)) or real_encode(images)
    seg.decode_with_state = lambda e, sets, prev=None: refines.append(prev) or real_refine(e, sets, prev)
    try:
        # from the full-image box (which GrabCut gets wrong), so that every turn clicks
        agent = make_agent("oracle-clicker:full-image", min_region=10)
        session = RefineSession(Scorer(seg, "bbox+2pos", parser_mode="lenient"), img, gt, max_turns=3, mode=mode)
        obs = {"image": img, "question": "q", "mask": np.zeros(gt.shape, np.uint8)}
        info = {"sample_id": "s", "messages": [], "gt_mask": gt, "max_turns": 3, "refine_mode": mode}
        ious = []
        while not session.done:
            turn = session.step(agent.act_turn({**obs, "turn": session.turn, "answers": tuple(session.answers)}, info))
            obs["mask"] = turn.mask.astype(np.uint8)
            ious.append(turn.info["iou"])
    finally:
        del seg.encode_batch, seg.decode_with_state
    return encodes, refines, ious


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_grabcut_session_encodes_once_and_refines_from_the_last_state(scene, mode):
    img, gt = scene
    encodes, refines, ious = session_episode(GrabCutSegmenter(), img, gt, mode)
    assert encodes == [1]
    assert len(refines) == 3 and refines[0] == [None] and all(p[0] is not None for p in refines[1:])
    assert ious[-1] > ious[0], ious  # the clicks help on this scene


@pytest.mark.slow
def test_sam2_session_encodes_once(tiny, scene):
    img, gt = scene
    encodes, refines, _ = session_episode(tiny, img, gt)
    assert encodes == [1]
    assert len(refines) == 3 and all(p[0] is not None for p in refines[1:])
    assert all(isinstance(inst.data, torch.Tensor) for p in refines[1:] for inst in p[0].instances.values())


def test_the_service_encode_cache_refines_as_its_segmenter_does(scene):
    # t2s serve and the verl/EasyR1 backend wrap their segmenter in EncodeCache: a refine turn
    # through it must use the inner segmenter's refinement, not the base class's fresh decode.
    from t2s_env.integrations.cache import EncodeCache

    img, _ = scene
    box = (20, 40, 140, 130)
    turns = [[G(box=box)], [G(box=box, negative_points=((110, 100),))]]
    seg = GrabCutSegmenter()
    direct = episode(seg, img, turns)
    cached = episode(EncodeCache(GrabCutSegmenter()), img, turns)
    fresh = seg.decode(seg.encode(img), [turns[1]])[0].numpy()
    assert not np.array_equal(direct[1].mask, fresh)  # the case tells refinement from a fresh decode
    for a, b in zip(direct, cached):
        assert np.array_equal(a.mask, b.mask)
        assert set(a.instances) == set(b.instances)
