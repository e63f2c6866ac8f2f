"""Probe: the oracle clicker's per-turn IoU with a refining segmenter, before the refine bench.

    python -m think2seg.benchmarks.probe_refine --segmenter grabcut --turns 3
    python -m think2seg.benchmarks.probe_refine --segmenter grabcut --option refine=mask
    python -m think2seg.benchmarks.probe_refine --segmenter sam2:tiny --option allow_random_weights=true --option image_size=256

For every sample of the dataset (strict protocol's frame: 840², IoU in the agent frame), one
``t2s_env.refine.RefineSession`` of K turns driven by the ``oracle-clicker`` agent
(``act_turn``): turn 1 = ``oracle-box``'s answer, parsed as the bench parses it (lenient);
each later turn one oracle click (replace mode: every instance with its clicks; or add),
decoded by the session with ``Segmenter.decode_with_state`` on one embedding. An episode
that ended (stop, or ``[]`` at turn 1 on an empty target) keeps its last mask.
Prints gIoU/cIoU per turn (``t2s_env.summarize_records``, strict) and the paired bootstrap
of the last turn against turn 1 (``t2s_env.metrics.paired_bootstrap``), and counts encoder
calls (one per sample). Not a test: a measurement to read (issue 20's targets).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from t2s_env import Scorer, get_protocol, make_dataset, make_observation, make_segmenter, summarize_records
from t2s_env.framing import load_scoring_frames
from t2s_env.metrics import paired_bootstrap
from t2s_env.options import parse_value
from t2s_env.refine import RefineSession
from think2seg.agents import make_agent
from think2seg.benchmarks.runner import PARSER_MODE


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic:val")
    ap.add_argument("--segmenter", default="grabcut")
    ap.add_argument("--option", action="append", default=[], help="segmenter KEY=VALUE")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--min-region", type=int, default=100)
    ap.add_argument("--mode", default="replace", choices=("replace", "add"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the per-turn records here")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (default 1: spinning threads thrash a shared machine)")
    args = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    options = {k: parse_value(v) for k, v in (o.split("=", 1) for o in args.option)}
    seg = make_segmenter(args.segmenter, **options)
    encodes = 0
    encode_batch = seg.encode_batch

    def counting(images):
        nonlocal encodes
        encodes += len(images)
        return encode_batch(images)

    seg.encode_batch = counting
    proto = get_protocol("strict")
    ds = make_dataset(args.dataset)
    samples = list(ds)[: args.limit] if args.limit else list(ds)
    agent = make_agent("oracle-clicker", min_region=args.min_region)
    scorer = Scorer(seg, "bbox+2pos", parser_mode=PARSER_MODE)
    turns: list[list[dict]] = [[] for _ in range(args.turns)]
    t0 = time.perf_counter()
    for sample in samples:
        frames = load_scoring_frames(sample, proto.image_size, proto.resize, proto.iou_frame)
        obs, info = make_observation(frames.framed, "bbox+2pos", privileged=True)
        info.update(max_turns=args.turns, refine_mode=args.mode)
        session = RefineSession(scorer, frames.image, frames.gt_mask, max_turns=args.turns, mode=args.mode)
        mask = np.zeros(frames.gt_mask.shape, np.uint8)
        rec = None
        for t in range(args.turns):
            if not session.done:
                turn_obs = {**obs, "mask": mask, "turn": t, "answers": tuple(session.answers)}
                turn = session.step(agent.act_turn(turn_obs, info))
                mask = turn.mask.astype(np.uint8)
                rec = {"sample_id": sample.sample_id, **turn.score.info(), "iou": turn.score.iou}
            turns[t].append(rec)  # an ended episode keeps its last answer's mask
    secs = time.perf_counter() - t0
    print(f"{args.segmenter} {options} on {args.dataset}: {len(samples)} samples, {encodes} encoder calls, {secs:.1f} s")
    per = []
    for t, recs in enumerate(turns):
        s = summarize_records(recs, "strict")
        per.append(s["gIoU"])
        print(f"turn {t + 1}: gIoU {100 * s['gIoU']:.2f}  cIoU {100 * s['cIoU']:.2f}")
    worse = sum(b["iou"] < a["iou"] - 1e-12 for a, b in zip(turns[0], turns[-1]))
    print(f"samples whose last-turn IoU is below turn 1's: {worse}")
    print("mean IoU non-decreasing:", all(b >= a for a, b in zip(per, per[1:])))
    if args.turns > 1:
        pb = paired_bootstrap(turns[-1], turns[0], "strict")
        g = pb["gIoU"]
        print(f"paired bootstrap turn {args.turns} - turn 1 gIoU: {100 * g['diff']:+.2f} "
              f"[{100 * g['interval'][0]:+.2f}, {100 * g['interval'][1]:+.2f}] (n={pb['n']}, B={pb['n_boot']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(turns, f)


if __name__ == "__main__":
    main()
