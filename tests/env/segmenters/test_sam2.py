"""SAM2 segmenter: batched decoding and cached embeddings give upstream's masks exactly.

SAM2.1 tiny with random weights at image_size 256 on CPU (compute, and so equality of
code paths, does not depend on weight values). The model is built once per module.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from t2s_env.errors import CheckpointError, ConfigError  # noqa: E402
from t2s_env.instructions import format_completion  # noqa: E402
from t2s_env.prompt import GeometricPrompt as G  # noqa: E402
from t2s_env.scoring import Scorer  # noqa: E402
from t2s_env.segmenters import make_segmenter  # noqa: E402
from t2s_env.segmenters.sam2_segmenter import (  # noqa: E402
    CHECKPOINT_ENV,
    SAM2Segmenter,
    canonical_size,
    resolve_checkpoint,
    upstream_predict,
)

pytestmark = pytest.mark.slow

H, W = 200, 232  # not square, not the model size: exercises the coordinate transforms


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine, two spinning intra-op threads slow
    these tests several-fold. Restored after the module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def seg(_one_thread) -> SAM2Segmenter:
    return SAM2Segmenter("tiny", device="cpu", allow_random_weights=True, image_size=256)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    img[50:120, 60:150] = (220, 200, 40)
    return img


@pytest.fixture(scope="module")
def emb(seg, image):
    return seg.encode(image)


def random_sets(n: int, seed: int = 1) -> list[list[G]]:
    """GRPO-like prompt sets: 0-3 instances each, mixing all four signatures."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        inst = []
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = rng.uniform(0, W * 0.6), rng.uniform(0, H * 0.6)
            x2, y2 = x1 + rng.uniform(8, W * 0.4), y1 + rng.uniform(8, H * 0.4)
            box = (round(x1), round(y1), round(x2), round(y2))
            pos = tuple((round(rng.uniform(x1, x2)), round(rng.uniform(y1, y2))) for _ in range(2))
            neg = ((1, 2), (W - 3, H - 4))
            kind = int(rng.integers(0, 4))
            inst.append(
                [G(box=box, positive_points=pos), G(box=box), G(positive_points=pos),
                 G(box=box, positive_points=pos, negative_points=neg)][kind]
            )
        sets.append(inst)
    return sets


SETS = random_sets(10)


def upstream_masks(seg: SAM2Segmenter, image: np.ndarray, sets, reencode: bool = False) -> np.ndarray:
    """Upstream's path: SAM2ImagePredictor.set_image, then predict per instance, OR.
    Upstream re-encodes per completion (``reencode``); encoding is deterministic, so
    most tests encode once to stay fast."""
    pred = seg.predictor()
    out = []
    with seg.context():
        for i, s in enumerate(sets):
            if i == 0 or reencode:
                pred.set_image(image)
            out.append(upstream_predict(pred, s, image.shape[:2]))
    return np.stack(out)


def test_decode_shape_dtype_device(seg, emb):
    m = seg.decode(emb, SETS)
    assert m.shape == (len(SETS), H, W) and m.dtype == torch.bool and m.device == seg.device
    assert any(bool(x.any()) for x in m)  # random weights still segment something


def test_batched_equals_one_call_per_set_and_upstream(seg, image, emb):
    batched = seg.decode(emb, SETS).numpy()
    per_set = np.stack([seg.decode(emb, [s])[0].numpy() for s in SETS])
    np.testing.assert_array_equal(batched, per_set)
    np.testing.assert_array_equal(batched, upstream_masks(seg, image, SETS))
    np.testing.assert_array_equal(batched[:3], upstream_masks(seg, image, SETS[:3], reencode=True))


def test_chunked_decoder_batches_give_the_same_masks(seg, emb, monkeypatch):
    from t2s_env.segmenters import sam2_segmenter

    whole = seg.decode(emb, SETS)
    monkeypatch.setattr(seg, "max_decode_batch", 3)
    np.testing.assert_array_equal(seg.decode(emb, SETS).numpy(), whole.numpy())
    # upsampling split into steps of 2 masks
    monkeypatch.setattr(sam2_segmenter, "_UPSAMPLE_BUDGET", 2 * H * W)
    np.testing.assert_array_equal(seg.decode(emb, SETS).numpy(), whole.numpy())


def test_cached_equals_uncached(seg, image, emb):
    cached = seg.decode(emb, SETS[:6])
    uncached = torch.stack([seg.decode(seg.encode(image), [s])[0] for s in SETS[:6]])
    assert torch.equal(cached, uncached)
    # set_image/predict convenience is the same path
    seg.set_image(image)
    np.testing.assert_array_equal(seg.predict(SETS[:6]), cached.numpy())


def test_batched_encoder_matches_single_and_predictor(seg, image, emb):
    other = image[::-1, ::-1].copy()
    embs = seg.encode_batch([other, image])
    assert embs[1].orig_hw == (H, W)
    assert torch.allclose(embs[1].image_embed, emb.image_embed, atol=1e-4, rtol=1e-4)
    pred = seg.predictor()
    with seg.context():
        pred.set_image(image)
    assert torch.equal(pred._features["image_embed"], emb.image_embed)
    for a, b in zip(pred._features["high_res_feats"], emb.high_res_feats):
        assert torch.equal(a, b)
    # batched encoding may differ in the last bits; masks agree on (nearly) all pixels
    a, b = seg.decode(embs[1], SETS).numpy(), seg.decode(emb, SETS).numpy()
    assert (a != b).mean() < 1e-3


def test_mixed_signatures_in_one_set(seg, image, emb):
    box = G(box=(60, 50, 150, 120))
    full = G(box=(20, 30, 90, 100), positive_points=((40, 60), (70, 80)))
    pts = G(positive_points=((180, 150), (190, 160)))
    sets = [[box, full], [full, box, pts], [box], [full]]
    got = seg.decode(emb, sets).numpy()
    np.testing.assert_array_equal(got, upstream_masks(seg, image, sets))
    np.testing.assert_array_equal(got[0], got[2] | got[3])  # OR of the instances


def test_empty_sets_are_all_false(seg, emb):
    m = seg.decode(emb, [[], [G()], [G(box=(60, 50, 150, 120))]])
    assert not m[0].any() and not m[1].any()
    assert seg.decode(emb, []).shape == (0, H, W)
    assert not seg.decode(emb, [[]]).any()


def test_scorer_group_scoring_matches_upstream(seg, image):
    gt = np.zeros((H, W), dtype=bool)
    gt[50:120, 60:150] = True
    scorer = Scorer(seg, prompt_variant="bbox+2pos+2neg", parser_mode="lenient")
    completions = [format_completion(s) for s in SETS if s][:6] + ["not an answer"]
    results = scorer.score(image, gt, completions)
    # the reference segments what the parser kept (clipped, de-duplicated)
    parsed = [list(scorer.parse(c, (W, H))[0].prompts) for c in completions[:-1]]
    assert all(parsed)
    ref = upstream_masks(seg, image, parsed)
    for r, m in zip(results, ref):
        assert r.parsed_ok
        assert (r.intersection, r.union) == (int((m & gt).sum()), int((m | gt).sum()))
    assert results[-1].iou == 0.0 and not results[-1].parsed_ok


def test_frozen_and_describe(seg):
    assert not seg.model.training
    assert all(not p.requires_grad for p in seg.model.parameters())
    d = seg.describe()
    assert d["name"] == "sam2" and d["size"] == "tiny" and d["image_size"] == 256
    assert d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["checkpoint"] is None and d["checkpoint_sha256"] is None and d["random_weights"] is True


def test_checkpoint_round_trip(seg, image, emb, tmp_path, monkeypatch):
    """The official format ({"model": state_dict}, torch.save) through checkpoint= and
    through $T2S_SAM2_CHECKPOINTS gives identical masks."""
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": seg.model.state_dict()}, path)
    ref = seg.decode(emb, SETS[:5])
    # other random weights first, so that equal masks prove the file was loaded
    a = SAM2Segmenter("tiny", checkpoint=path, device="cpu", image_size=256, seed=123)
    assert torch.equal(a.decode(a.encode(image), SETS[:5]), ref)
    d = a.describe()
    assert d["checkpoint"] == str(path) and d["random_weights"] is False
    assert d["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    b = make_segmenter("sam2:tiny", device="cpu", image_size=256, seed=7)
    assert b.checkpoint == path
    assert torch.equal(b.decode(b.encode(image), SETS[:5]), ref)
    # a directory passed as checkpoint= resolves to the official file name too
    assert resolve_checkpoint("tiny", tmp_path) == path


def test_bad_checkpoints(seg, tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read") as e:
        SAM2Segmenter("tiny", checkpoint=bad, device="cpu", image_size=256)
    # one line, and no advice to retry with weights_only=False (that would run the file's code)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert str(bad) in str(e.value) and "download it again" in str(e.value)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {}}, wrong)
    with pytest.raises(CheckpointError, match="not an official SAM2 checkpoint"):
        SAM2Segmenter("tiny", checkpoint=wrong, device="cpu", image_size=256)
    # keys of another model
    partial = tmp_path / "partial.pt"
    torch.save({"model": {"not.a.sam2.key": torch.zeros(1)}}, partial)
    with pytest.raises(CheckpointError, match="does not match SAM2.1 tiny: .* missing keys"):
        SAM2Segmenter("tiny", checkpoint=partial, device="cpu", image_size=256)


def test_missing_checkpoint_message(tmp_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(CheckpointError) as e:
        SAM2Segmenter("small", checkpoint=missing, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt" in msg
    assert "download_ckpts.sh" in msg
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match=f"sam2.1_hiera_large.pt .*{CHECKPOINT_ENV}"):
        SAM2Segmenter("large", device="cpu")


def test_random_weights_need_opt_in(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(CheckpointError, match="allow_random_weights|no checkpoint"):
        SAM2Segmenter("tiny", device="cpu", image_size=256)
    with pytest.raises(CheckpointError):
        make_segmenter("sam2:tiny", device="cpu")


def test_sizes_and_options():
    assert canonical_size("b+") == "base_plus" and canonical_size("T") == "tiny"
    with pytest.raises(ConfigError, match="tiny, small, base_plus, large"):
        canonical_size("huge")
    with pytest.raises(ConfigError):
        make_segmenter("sam2:huge")
    with pytest.raises(ConfigError, match="multiple of 32"):
        SAM2Segmenter("tiny", allow_random_weights=True, device="cpu", image_size=100)
    with pytest.raises(ConfigError, match="dtype"):
        SAM2Segmenter("tiny", allow_random_weights=True, device="cpu", dtype="fp8")


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"image_size": True}, "image_size=True is invalid: give an integer in [64, 4096]"),
        ({"image_size": 8192}, "image_size=8192"),
        ({"image_size": 256.0}, "image_size=256.0"),
        ({"max_decode_batch": 0}, "max_decode_batch=0 is invalid: give an integer >= 1"),
        ({"max_decode_batch": float("nan")}, "max_decode_batch=nan"),
        ({"mask_threshold": float("nan")}, "mask_threshold=nan is invalid: give a finite number"),
        ({"mask_threshold": "0.5"}, "mask_threshold=0.5 is invalid"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"compile": "false"}, "compile='false' is invalid: give true or false"),
        ({"allow_random_weights": 1}, "allow_random_weights=1"),
        ({"device": "gpu"}, "device=gpu is invalid: give cpu, cuda or cuda:<index>"),
        ({"device": 1.5}, "device=1.5"),
        ({"image_sise": 256}, "has no option 'image_sise' (did you mean image_size?)"),
    ],
)
def test_bad_option_values_are_one_line_before_any_model_is_built(options, needle):
    base = {"device": "cpu", "allow_random_weights": True}
    with pytest.raises(ConfigError) as e:
        make_segmenter("sam2:tiny", **{**base, **options})
    assert needle in str(e.value) and "\n" not in str(e.value)
