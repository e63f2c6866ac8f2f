"""SAM3 on tiny random configs: the `sam3` segmenter (Sam3TrackerModel, boxes and points,
encode once / decode many, loaded from a local directory) and the text-prompted
`sam3-text` baseline (Sam3Model given the question, no LVLM)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from t2s_env import CheckpointError, ConfigError, GeometricPrompt as G, Scorer, parse_completion  # noqa: E402
from t2s_env.env import Think2SegEnv  # noqa: E402
from t2s_env.segmenters import SEGMENTERS, make_segmenter  # noqa: E402
from t2s_env.segmenters.sam3_segmenter import SAM3Segmenter, tiny_config  # noqa: E402
from tests.datagen import write_rectangle_dataset  # noqa: E402

SIZE = 112


@pytest.fixture(scope="module")
def tracker_dir(tmp_path_factory):
    torch.manual_seed(0)
    seg = SAM3Segmenter(config=tiny_config(SIZE), allow_random_weights=True, device="cpu")
    path = tmp_path_factory.mktemp("sam3-tracker")
    seg.model.save_pretrained(path)
    seg.processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def seg(tracker_dir):
    return make_segmenter(f"sam3:{tracker_dir}", device="cpu")


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)  # not square, not the model's side


SETS = [
    [G((10, 10, 60, 50))],                                   # box
    [G((10, 10, 60, 50), ((30, 30), (40, 40)))],             # box + 2 positive points
    [G(None, ((30, 30), (40, 40)), ((5, 5), (90, 80)))],     # points only, with negatives
    [],                                                      # nothing: empty mask
    [G((10, 10, 60, 50)), G((70, 20, 120, 90))],             # two instances, OR-ed
    [G((70, 20, 120, 90))],
]


def test_registered_and_loads_from_a_local_directory(seg, tracker_dir):
    assert "sam3" in SEGMENTERS
    assert isinstance(seg, SAM3Segmenter) and seg.checkpoint == tracker_dir and not seg.random_weights
    d = seg.describe()
    assert d["name"] == "sam3" and d["checkpoint"] == str(tracker_dir) and "SAM License" in d["license"]


def test_encode_once_decode_many_matches_one_by_one(seg, image):
    emb = seg.encode(image)
    masks = seg.decode(emb, SETS)
    assert masks.shape == (len(SETS), 96, 128) and masks.dtype == torch.bool and masks.device == seg.device
    assert not masks[3].any() and masks[0].any()
    # batching across prompt sets and signatures changes nothing
    for j, s in enumerate(SETS):
        assert torch.equal(seg.decode(emb, [s])[0], masks[j])
    # a prompt set's mask is the OR of its instances' masks
    assert torch.equal(masks[4], masks[0] | masks[5])
    # a second encoding of the same image (batched with another) gives the same masks
    emb2 = seg.encode_batch([image[::-1].copy(), image])[1]
    assert torch.equal(seg.decode(emb2, SETS), masks)
    # decode chunks (max_decode_batch) do not change the result
    seg.max_decode_batch, old = 1, seg.max_decode_batch
    try:
        assert torch.equal(seg.decode(emb, SETS), masks)
    finally:
        seg.max_decode_batch = old


def test_prompts_reach_the_model_in_its_input_pixels(seg, image, monkeypatch):
    """Boxes and points are scaled from image pixels to the model's input side per axis."""
    seen = {}
    forward = seg.model.forward

    def spy(**kw):
        seen.update(kw)
        return forward(**kw)

    monkeypatch.setattr(seg.model, "forward", spy)
    seg.decode(seg.encode(image), [[G((64, 48, 128, 96), ((32, 24), (64, 48)), ((0, 0), (128, 96)))]])
    s = seg.input_size[0]
    assert seen["input_boxes"].tolist() == [[[s / 2, s / 2, s, s]]]
    assert seen["input_points"].tolist() == [[[[s / 4, s / 4], [s / 2, s / 2], [0, 0], [s, s]]]]
    assert seen["input_labels"].tolist() == [[[1, 1, 0, 0]]] and seen["multimask_output"] is False


def test_env_scores_with_sam3(seg, tmp_path):
    write_rectangle_dataset(tmp_path, split="val", n=2, n_empty=0, seed=3, size=SIZE)
    env = Think2SegEnv(root=str(tmp_path), split="val", segmenter=seg, image_size=SIZE)
    env.reset(options={"index": 0})
    text = '<think> x </think>\n<answer>```json[{"bbox_2d": [10,10,60,50], "positive_points": [[30,30],[40,40]]}]```</answer>'
    _, reward, terminated, _, info = env.step(text)
    assert terminated and 2.0 <= reward <= 4.0 and not info["pred_empty"]


def test_bad_checkpoints_are_one_line_errors(tracker_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("T2S_SAM3_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="no SAM3 checkpoint"):
        make_segmenter("sam3")
    with pytest.raises(CheckpointError, match="is not a directory") as exc:
        make_segmenter(f"sam3:{tmp_path / 'missing'}")
    assert str(tmp_path / "missing") in str(exc.value)
    no_weights = tmp_path / "noweights"
    no_weights.mkdir()
    shutil.copy(tracker_dir / "config.json", no_weights / "config.json")
    with pytest.raises(CheckpointError, match="has no weights") as exc:
        make_segmenter(f"sam3:{no_weights}")
    assert str(no_weights) in str(exc.value) and "\n" not in str(exc.value)
    other = tmp_path / "sam2"
    shutil.copytree(tracker_dir, other)
    (other / "config.json").write_text(json.dumps({"model_type": "sam2"}))
    with pytest.raises(CheckpointError, match="not SAM3"):
        make_segmenter(f"sam3:{other}")


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"max_decode_batch": 0}, "max_decode_batch=0 is invalid: give an integer >= 1"),
        ({"max_decode_batch": True}, "max_decode_batch=True"),
        ({"max_decode_batch": float("inf")}, "max_decode_batch=inf"),
        ({"allow_random_weights": "yes"}, "allow_random_weights='yes' is invalid"),
        ({"device": "gpu"}, "device=gpu is invalid"),
        ({"max_decode_bach": 8}, "has no option 'max_decode_bach' (did you mean max_decode_batch?)"),
    ],
)
def test_bad_option_values_are_one_line(tracker_dir, options, needle):
    with pytest.raises(ConfigError) as e:
        make_segmenter(f"sam3:{tracker_dir}", **{"device": "cpu", **options})
    assert needle in str(e.value) and "\n" not in str(e.value)


# -- the text-prompted baseline -----------------------------------------------------------------

@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory):
    from think2seg.agents.sam3_text import tiny_sam3

    torch.manual_seed(0)
    model, processor = tiny_sam3(SIZE)
    path = tmp_path_factory.mktemp("sam3-full")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_prompt_for_a_mask_is_its_box_and_interior_points():
    from think2seg.agents.sam3_text import prompt_for_mask

    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:70] = True  # 50 wide, 20 high
    p = prompt_for_mask(mask, 2, 2, True)
    assert p.box == (20.0, 10.0, 70.0, 30.0)
    assert len(p.positive_points) == 2 and p.positive_points[0] != p.positive_points[1]
    for x, y in p.positive_points:
        assert mask[int(y), int(x)]
        assert 20 + 5 <= x <= 70 - 5 and 10 + 5 <= y <= 30 - 5  # away from the border
    assert all(not mask[int(min(y, 49)), int(min(x, 79))] for x, y in p.negative_points)
    assert prompt_for_mask(np.zeros((5, 5), bool), 2, 0, True) is None
    assert prompt_for_mask(mask, 2, 0, False).box is None


@pytest.mark.slow
def test_text_baseline_answers_in_the_protocol(sam3_dir, tmp_path):
    from think2seg.agents import make_agent

    agent = make_agent(f"sam3-text:{sam3_dir}", threshold=0.0, max_instances=3, device="cpu")
    img = (np.random.default_rng(1).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    obs = {"image": img, "question": "where could ships be repaired?"}
    text = agent.act(obs, {})
    parsed = parse_completion(text, image_size=(SIZE, SIZE))
    assert parsed.ok and parsed.think_ok and 1 <= len(parsed.prompts) <= 3
    assert "where could ships be repaired?" in text  # the question itself was SAM3's prompt
    # nothing above the threshold: the empty answer
    none = make_agent(f"sam3-text:{sam3_dir}", threshold=1.0, device="cpu").act(obs, {})
    assert parse_completion(none).is_empty_answer
    # in a relative frame the same instances are written in its units
    rel = make_agent(f"sam3-text:{sam3_dir}", threshold=0.0, max_instances=3, coord_frame="rel1000", device="cpu")
    a = parse_completion(text, image_size=(SIZE, SIZE)).prompts
    b = parse_completion(rel.act(obs, {}), image_size=(SIZE, SIZE), coord_frame="rel1000").prompts
    assert len(a) == len(b)
    assert [v for p in b for v in p.box] == pytest.approx([v for p in a for v in p.box], abs=SIZE / 1000)
    # scored by the env like any agent
    result = Scorer("box").score(img, np.zeros((SIZE, SIZE), bool), [text])[0]
    assert 0.0 <= result.reward <= 4.0
    with pytest.raises(CheckpointError, match="not a SAM3 model directory"):
        make_agent(f"sam3-text:{tmp_path}")
