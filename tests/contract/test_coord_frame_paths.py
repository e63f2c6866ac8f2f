"""One rel1000 answer gets one reward wherever it is scored (issue 18, item 3): in process
(`Scorer`, the env), through `t2s serve --coord-frame rel1000` (`RemoteScorer`, both with
pixels and with a reference), and through the verl and EasyR1 reward functions, local and
remote. A frame mismatch with the server, and an unknown reward option, are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import t2s_env.integrations.easyr1 as easyr1
import t2s_env.integrations.verl as verl
from t2s_env.datasets import make_dataset
from t2s_env.env import Think2SegEnv
from t2s_env.errors import ConfigError
from t2s_env.instructions import format_completion
from t2s_env.framing import load_framed
from t2s_env.integrations import backend as backend_mod
from t2s_env.prompt import GeometricPrompt
from t2s_env.remote import RemoteScorer, ServiceError
from t2s_env.scoring import Scorer
from tests.datagen import write_rectangle_dataset
from think2seg.scripts import loadtest

SIDE = 96


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("frames") / "rects"
    rects = write_rectangle_dataset(root, split="val", n=2, n_empty=0, seed=5, size=SIDE)
    scale = 1000.0 / SIDE  # pixels -> rel1000
    prompts = []
    for x1, y1, x2, y2 in rects[1]["rects"]:  # every target of img001, written in rel1000
        cx, cy = round((x1 + x2) / 2 * scale), round((y1 + y2) / 2 * scale)
        prompts.append(GeometricPrompt(box=tuple(float(round(v * scale)) for v in (x1, y1, x2, y2)),
                                       positive_points=((float(cx), float(cy)), (float(cx + 5), float(cy + 5)))))
    completion = format_completion(prompts)
    ref = {"dataset": "earthreason:val", "root": str(root), "sample_id": "img001", "image_size": SIDE}
    framed = next(load_framed(s, SIDE) for s in make_dataset("earthreason:val", root=root) if s.sample_id == "img001")
    want = Scorer("box", coord_frame="rel1000").score(framed.image, framed.gt_mask, [completion])[0]
    # the frame matters: read as pixels, the same answer scores otherwise
    assert Scorer("box").score(framed.image, framed.gt_mask, [completion])[0].reward != want.reward
    return {"root": root, "ref": ref, "completion": completion, "image": framed.image, "mask": framed.gt_mask,
            "want": want.reward}


@pytest.fixture(scope="module")
def rel1000_server(case):
    proc, url = loadtest.spawn_server("--segmenter", "box", "--coord-frame", "rel1000", "--data-root", str(case["root"]))
    yield url
    loadtest.stop_server(proc)


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    monkeypatch.setattr(backend_mod, "_BACKENDS", {})


def test_in_process(case):
    env = Think2SegEnv(dataset_spec="earthreason", root=str(case["root"]), split="val", segmenter="box",
                       image_size=SIDE, coord_frame="rel1000")
    env.reset(options={"sample_id": "img001"})
    _, reward, *_ = env.step(case["completion"])
    assert reward == case["want"]


def test_through_the_service(case, rel1000_server):
    health = RemoteScorer(rel1000_server).health()
    assert health["coord_frame"] == health["scorer"]["coord_frame"] == "rel1000"
    for client in (RemoteScorer(rel1000_server), RemoteScorer(rel1000_server, coord_frame="rel1000")):
        assert client.score(case["image"], case["mask"], [case["completion"]])[0].reward == case["want"]
        assert client.score_refs([(case["ref"], [case["completion"]])])[0][0].reward == case["want"]
        assert client.coord_frame == "rel1000"  # its local parse reads the server's frame
        assert client.parse(case["completion"], (SIDE, SIDE))[0].prompts == \
            Scorer(coord_frame="rel1000").parse(case["completion"], (SIDE, SIDE))[0].prompts
    with pytest.raises(ServiceError) as err:
        RemoteScorer(rel1000_server, coord_frame="abs").score(case["image"], case["mask"], [case["completion"]])
    message = str(err.value)
    assert "\n" not in message and "'rel1000'" in message and "'abs'" in message and "--coord-frame abs" in message


def test_through_verl(case, rel1000_server):
    args = ("think2seg/earthreason", case["completion"], json.dumps(case["ref"]), None)
    assert verl.compute_score(*args, segmenter="box", coord_frame="rel1000")["score"] == case["want"]
    assert verl.compute_score(*args, remote=rel1000_server, coord_frame="rel1000")["score"] == case["want"]
    assert verl.compute_score(*args, remote=rel1000_server)["score"] == case["want"]  # default: the server's
    with pytest.raises(ServiceError, match="coord_frame 'rel1000' but this client was asked for 'abs'"):
        verl.compute_score(*args, remote=rel1000_server, coord_frame="abs")
    # a key verl's reward loop adds when a reward model is configured is not an option of ours
    assert verl.compute_score(*args, segmenter="box", coord_frame="rel1000", reward_router_address=None)["score"] == case["want"]


def test_through_easyr1(case):
    inputs = [{"response": case["completion"], "response_length": len(case["completion"]),
               "ground_truth": json.dumps(case["ref"])}]
    assert easyr1.compute_score(inputs, segmenter="box", coord_frame="rel1000")[0]["overall"] == case["want"]
    assert easyr1.compute_score_sequential(inputs[0], segmenter="box", coord_frame="rel1000")["overall"] == case["want"]


@pytest.mark.parametrize("options, words", [
    ({"coord_frmae": "rel1000"}, "unknown Think2Seg reward option 'coord_frmae' (did you mean coord_frame?)"),
    ({"segmentor": "box"}, "(did you mean segmenter?)"),
    ({"coord_frame": "rel100"}, "unknown coord_frame 'rel100'"),
])
def test_unknown_or_misspelt_options_are_one_line_errors(case, options, words):
    with pytest.raises(ConfigError) as err:
        verl.compute_score("x", case["completion"], json.dumps(case["ref"]), None, segmenter="box", **options)
    assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        easyr1.compute_score([{"response": "x", "ground_truth": json.dumps(case["ref"])}], segmenter="box", **options)


def test_the_in_process_rel1000_reward_is_real(case):
    """The crafted answer covers its target: the frame conversion, not luck, makes the rewards equal."""
    assert case["want"] > 3.5 and np.count_nonzero(case["mask"]) > 0


def test_a_rel1_structured_action_keeps_sub_pixel_precision():
    # The canonical completion of a structured action is parsed again; rounding 0.1234 to
    # two decimals moved the box by 2.9 px at 840 and changed its mask.
    from t2s_env import GeometricPrompt
    from t2s_env.scoring import Scorer

    img = np.zeros((840, 840, 3), np.uint8)
    gt = np.zeros((840, 840), bool)
    gt[104:520, 104:520] = True
    a = GeometricPrompt(box=(0.1234, 0.1234, 0.6189, 0.6189), positive_points=((0.3, 0.3), (0.4, 0.4)))
    rel = Scorer("box", "bbox+2pos", coord_frame="rel1").score(img, gt, [a])[0]
    px = Scorer("box", "bbox+2pos").score(
        img, gt, [GeometricPrompt(box=tuple(v * 840 for v in a.box), positive_points=((252, 252), (336, 336)))]
    )[0]
    assert rel.parsed_ok and rel.iou == px.iou
    assert rel.prompts[0]["bbox_2d"] == pytest.approx([v * 840 for v in a.box], abs=0.1)
