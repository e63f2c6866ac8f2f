"""Coordinate frames (abs pixels, rel1000, rel1): hand-made answers in each frame, converted
to pixels by the parser, scored by the env and the harness, recorded in info and run.yaml."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from t2s_env import ConfigError, Scorer, parse_completion
from t2s_env.coords import COORD_FRAMES, check_frame_match, from_pixels, get_coord_frame, to_pixels
from t2s_env.env import Think2SegEnv
from t2s_env.instructions import build_messages, coord_variant, get_variant
from t2s_env.protocol import MetricProtocol
from t2s_env.prompt import GeometricPrompt
from tests.datagen import write_rectangle_dataset

W, H = 200, 120  # not square: each axis converts with its own side
TARGET = (50, 30, 150, 90)  # pixels: x1, y1, x2, y2


def answer(box, points) -> str:
    body = json.dumps([{"bbox_2d": list(box), "positive_points": [list(p) for p in points]}])
    return f"<think> there </think>\n<answer>```json{body}```</answer>"


#: the same target written by hand in each frame
HAND_MADE = {
    "abs": answer(TARGET, [(100, 60), (90, 50)]),
    "rel1000": answer((250, 250, 750, 750), [(500, 500), (450, 417)]),
    "rel1": answer((0.25, 0.25, 0.75, 0.75), [(0.5, 0.5), (0.45, 0.417)]),
}


def scene():
    image = np.zeros((H, W, 3), np.uint8)
    gt = np.zeros((H, W), bool)
    x1, y1, x2, y2 = TARGET
    gt[y1:y2, x1:x2] = True
    return image, gt


@pytest.mark.parametrize("frame", sorted(HAND_MADE))
def test_hand_made_answer_in_each_frame_becomes_pixels(frame):
    parsed = parse_completion(HAND_MADE[frame], image_size=(W, H), coord_frame=frame)
    assert parsed.ok
    p = parsed.prompts[0]
    assert p.box == pytest.approx(TARGET)
    assert p.positive_points[0] == pytest.approx((100, 60))
    image, gt = scene()
    result = Scorer("box", coord_frame=frame).score(image, gt, [HAND_MADE[frame]])[0]
    assert result.iou == pytest.approx(1.0) and result.reward == pytest.approx(4.0)
    assert result.prompts[0]["bbox_2d"] == list(TARGET)


def test_an_answer_read_in_the_wrong_frame_misses():
    """The silent failure the option exists for: a rel1000 answer read as pixels."""
    image, gt = scene()
    right = Scorer("box", coord_frame="rel1000").score(image, gt, [HAND_MADE["rel1000"]])[0]
    wrong = Scorer("box").score(image, gt, [HAND_MADE["rel1000"]])[0]
    assert right.iou == pytest.approx(1.0)
    assert wrong.iou < 0.2


def test_relative_answers_are_clipped_in_their_own_units():
    text = answer((-50, 500, 1400, 1000), [(500, 500), (2000, -3)])
    p = parse_completion(text, image_size=(W, H), coord_frame="rel1000").prompts[0]
    assert p.box == (0.0, 60.0, float(W), float(H))  # the far edge is exactly the side
    assert p.positive_points[1] == (float(W), 0.0)
    # raw geometry converts without clipping
    raw = parse_completion(text, image_size=(W, H), coord_frame="rel1000", prompt_geometry="raw").prompts[0]
    assert raw.box == pytest.approx((-10.0, 60.0, 280.0, 120.0))


def test_without_image_size_relative_answers_stay_in_their_units():
    p = parse_completion(HAND_MADE["rel1000"], coord_frame="rel1000").prompts[0]
    assert p.box == (250.0, 250.0, 750.0, 750.0)


def test_to_and_from_pixels_round_trip():
    prompt = GeometricPrompt(TARGET, ((100, 60), (90, 50)), ((10, 10), (190, 110)))
    for name in COORD_FRAMES:
        written = from_pixels([prompt], name, W, H)
        back = to_pixels(written, name, W, H)[0]
        tol = {"abs": 0, "rel1000": 0.2, "rel1": 0.2}[name]
        assert back.box == pytest.approx(prompt.box, abs=tol)
        assert back.negative_points[1] == pytest.approx((190, 110), abs=tol)
    assert from_pixels([prompt], "rel1000", W, H)[0].box == (250.0, 250.0, 750.0, 750.0)


def test_unknown_frame_is_one_line_config_error():
    with pytest.raises(ConfigError, match="unknown coord_frame 'rel100'.*abs, rel1000, rel1"):
        get_coord_frame("rel100")
    with pytest.raises(ConfigError, match="coord_frame"):
        Scorer("box", coord_frame="pixels")
    with pytest.raises(ConfigError, match="coord_frame"):
        MetricProtocol(coord_frame="rel999")


def test_frame_mismatch_message_names_the_model_and_the_fix():
    check_frame_match("rel1000", "rel1000", "/m/qwen3", "fix")
    with pytest.raises(ConfigError) as exc:
        check_frame_match("rel1000", "abs", "/models/qwen3-vl-2b", "pass coord_frame=rel1000")
    msg = str(exc.value)
    assert "/models/qwen3-vl-2b" in msg and "rel1000" in msg and "abs" in msg and "\n" not in msg


# -- prompt variants ----------------------------------------------------------------------


def test_relative_frames_get_their_own_prompt_variant():
    v = get_variant("bbox+2pos@rel1000")
    assert v.name == "bbox+2pos@rel1000" and (v.n_positive, v.n_negative, v.use_box) == (2, 0, True)
    text = v.user_text("where?")
    assert "from 0 to 1000" in text
    # upstream's example, converted from the 840 frame: 310 -> 369, 586 -> 698
    assert '"bbox_2d": [369,429,675,698]' in text
    rel1 = get_variant("bbox+2pos+2neg@rel1")
    assert '"bbox_2d": [0.369,0.429,0.675,0.698]' in rel1.example and "negative_points" in rel1.example
    # abs is upstream's wording byte for byte
    assert coord_variant("bbox+2pos", "abs") is get_variant("bbox+2pos")
    assert coord_variant("bbox+2pos@rel1000", "abs").name == "bbox+2pos"
    # the example itself parses, and its boxes land where upstream's do in an 840 frame
    first = parse_completion(f"<answer>```json{v.example}```</answer>", image_size=(840, 840), coord_frame="rel1000")
    assert first.ok and first.prompts[0].box == pytest.approx((310, 360, 567, 586), abs=0.5)
    with pytest.raises(ConfigError, match="prompt_variant"):
        get_variant("bbox+2pos@pixels")


# -- env and harness ----------------------------------------------------------------------

SIZE = 112


@pytest.fixture(scope="module")
def rects(tmp_path_factory):
    root = tmp_path_factory.mktemp("coord_rects")
    info = write_rectangle_dataset(root, split="val", n=3, n_empty=0, seed=5, size=SIZE)
    return root, info


def test_env_coord_frame_option(rects):
    root, info = rects
    env = Think2SegEnv(root=str(root), split="val", segmenter="box", image_size=SIZE, coord_frame="rel1000")
    obs, reset_info = env.reset(options={"index": 0})
    assert reset_info["coord_frame"] == "rel1000"
    assert reset_info["messages"] == build_messages(obs["question"], "bbox+2pos@rel1000")
    gt = env.unwrapped._framed.gt_mask
    ys, xs = np.nonzero(gt)
    box_px = GeometricPrompt((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1),
                             (((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2),) * 2)
    written = from_pixels([box_px], "rel1000", SIZE, SIZE)[0]
    text = answer(written.box, written.positive_points)
    _, reward, _, _, step_info = env.step(text)
    assert step_info["coord_frame"] == "rel1000"
    assert step_info["iou"] > 0.95  # rounding to 1/1000 of 112 px moves edges < 0.06 px
    assert max(step_info["prompts"][0]["bbox_2d"]) <= SIZE  # prompts are reported in pixels
    # the default stays today's pixels
    env_abs = Think2SegEnv(root=str(root), split="val", segmenter="box", image_size=SIZE)
    _, i = env_abs.reset(options={"index": 0})
    assert i["coord_frame"] == "abs" and env_abs.variant.name == "bbox+2pos"
    with pytest.raises(ConfigError, match="coord_frame"):
        Think2SegEnv(root=str(root), split="val", segmenter="box", image_size=SIZE, coord_frame="norm")


from think2seg.agents import Agent  # noqa: E402


class CentreRel1000(Agent):
    """A plug-in agent that declares its frame: the middle half of the image, in 0-1000."""

    name = "centre-rel1000"
    coord_frame = "rel1000"

    def act_batch(self, observations, infos):
        return [answer((250, 250, 750, 750), [(500, 500), (510, 510)]) for _ in observations]

    def config(self):
        return {"name": self.name, "coord_frame": self.coord_frame}


def test_bench_records_the_frame_in_run_yaml(rects, tmp_path):
    from think2seg.benchmarks import cli, plan
    from think2seg.benchmarks.results_store import ResultsStore

    root, _ = rects
    out = tmp_path / "out"
    common = ["--dataset", "earthreason:val", "--root", str(root), "--segmenter", "box", "--no-tensorboard",
              "--no-progress", "--protocol-option", f"image_size={SIZE}"]
    rc = cli.main([*common, "--out", str(out), "--agents", "tests.env.test_coords:CentreRel1000",
                   "--protocol-option", "coord_frame=rel1000"])
    assert rc == 0
    (run,) = (out / "runs").iterdir()
    cfg = yaml.safe_load((run / "run.yaml").read_text())
    assert cfg["protocol"]["coord_frame"] == "rel1000"
    assert cfg["prompt_variant"] == "bbox+2pos@rel1000"
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert all(r["prompts"][0]["bbox_2d"] == [28, 28, 84, 84] for r in records)  # converted to 112-px pixels
    # an agent that declares no frame writes pixels: refused under rel1000, in one line
    with pytest.raises(ConfigError, match="center-box.*declares no coord_frame.*coord_frame=abs"):
        plan.plan_new(cli.build_parser().parse_args(
            [*common, "--out", str(tmp_path / "x"), "--agents", "center-box", "--protocol-option", "coord_frame=rel1000"]),
            ResultsStore(tmp_path / "x"), [])
    # and the frame-declaring agent is refused under abs
    with pytest.raises(ConfigError, match="centre-rel1000 answers in the rel1000"):
        plan.plan_new(cli.build_parser().parse_args(
            [*common, "--out", str(tmp_path / "y"), "--agents", "tests.env.test_coords:CentreRel1000"]),
            ResultsStore(tmp_path / "y"), [])

    assert {r.protocol for r in ResultsStore(out).runs()} == {f"strict+coord_frame=rel1000+image_size={SIZE}"}
