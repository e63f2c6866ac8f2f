"""Training rows for trl's ``GRPOTrainer``: one row per (image, question), materialised for
every epoch in a seeded order, images loaded on access. ``t2s train grpo`` reads them once
in that order (``shuffle_dataset=False``, one trl epoch).

- ``question_mode="redraw"`` (default): each epoch every image appears once with a question
  re-drawn by ``seeded_choice(n, seed, image_id@epoch)`` (epoch 0 equals the environment's
  ``question=random``), so the model meets other questions of an image in later epochs.
  Upstream drew one question per image once, unseeded.
- ``"all"``: every question of every image, each epoch.
- ``"first"`` / ``"random"``: one fixed question per image (questions[0] / seeded once).

Re-drawing applies to the EarthReason layout (one mask per image, shared by its questions);
in referring datasets every expression keeps its own question and mask.

Materialising the epochs (rather than re-drawing inside a transform on a trl epoch hook)
keeps the order a pure function of the arguments, so a resumed run continues on exactly the
rows that an uninterrupted run would have seen, on every rank. Images are never stored in
Arrow: a transform adds each row's ``prompt`` (chat messages) and ``image`` (PIL, in the
protocol frame) through a small cache of framed samples; ground-truth masks reach the reward
through the ``sample_id`` column and :meth:`TrainRows.gt_mask`::

    rows = build_rows(make_dataset("earthreason:train", root=ROOT, question="first"), epochs=2, seed=0,
                      image_size=840, prompt_variant="bbox+2pos")
    make_reward_functions(scorer, gt_mask_lookup=rows.gt_mask)

Needs the ``datasets`` package (a dependency of trl). Absolute imports only, as the other
integrations.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from t2s_env.datasets import EarthReasonDataset, seeded_choice
from t2s_env.framing import FramedSample, load_framed
from t2s_env.instructions import build_messages, get_variant
from t2s_env.sample_cache import FramedSampleCache

#: question modes -> how the base dataset is loaded (``make_dataset(..., question=)``)
LOAD_MODES = {"redraw": "first", "all": "all", "first": "first", "random": "random"}


@dataclass
class TrainRows:
    dataset: Any  # datasets.Dataset with a transform adding `prompt` and `image`
    samples: list[Any]  # the base samples, by index
    # framed samples by base index: trl asks for each row num_generations times in a row,
    # and the reward asks for its mask
    cache: FramedSampleCache
    sample_index: dict[str, int]  # sample_id -> base index
    rows_per_epoch: int
    image_size: int

    def framed(self, index: int) -> FramedSample:
        """Base sample ``index`` in the protocol frame (image and mask), from the cache."""
        return self.cache.get_or_load(index, lambda: load_framed(self.samples[index], self.image_size))

    def gt_mask(self, sample_id: str) -> np.ndarray:
        """The ground-truth mask of a row's ``sample_id`` (the reward's lookup)."""
        return self.framed(self.sample_index[sample_id]).gt_mask


def question_choice(sample: Any, mode: str, seed: int, epoch: int) -> tuple[str, int]:
    """(question, its index) of ``sample`` in ``epoch``: re-drawn per epoch in ``redraw``
    mode, else the loaded one."""
    qs = tuple(sample.questions) or (sample.question,)
    if mode != "redraw":
        return sample.question, sample.question_index
    key = sample.image_id if epoch == 0 else f"{sample.image_id}@{epoch}"
    k = seeded_choice(len(qs), seed, key)
    return qs[k], k


def build_rows(base: Sequence[Any], *, epochs: int, seed: int, image_size: int, prompt_variant: str,
               question_mode: str = "redraw", samples: Sequence[Any] | None = None, cache_items: int = 64) -> TrainRows:
    """Rows for ``epochs`` epochs of ``samples`` (default: all of dataset ``base``, loaded
    with ``question=LOAD_MODES[question_mode]``); each epoch a seeded permutation of the
    units (images, or questions in ``all`` mode). ``cache_items`` framed samples are kept."""
    from datasets import Dataset

    samples = list(base) if samples is None else list(samples)
    # EarthReason-layout data has one mask per image, so any question of an image can be
    # re-drawn; referring datasets keep each expression with its own mask. (The reward
    # encodes each image once either way: it groups by image_id, then by sample_id.)
    one_mask_per_image = isinstance(base, EarthReasonDataset)
    rows: dict[str, list[Any]] = defaultdict(list)
    sample_index: dict[str, int] = {}
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(samples))
        for u in order.tolist():
            s = samples[u]
            # Re-drawing needs questions that share the sample's mask: true of EarthReason's
            # per-image questions; referring datasets keep each expression with its own mask.
            mode = question_mode if one_mask_per_image else "first"
            question, k = question_choice(s, mode, seed, epoch)
            sid = f"{s.image_id}#q{k}" if question_mode in ("redraw", "all") and one_mask_per_image else s.sample_id
            sample_index[sid] = u
            rows["row_id"].append(len(rows["row_id"]))
            rows["epoch"].append(epoch)
            rows["sample_id"].append(sid)
            rows["image_id"].append(s.image_id)
            rows["question"].append(question)
            rows["unit"].append(u)
    ds = Dataset.from_dict(dict(rows))
    # bounded by count only (the images are the protocol frame's, a few MB each)
    cache = FramedSampleCache(max_bytes=2**62, max_items=cache_items)
    data = TrainRows(ds, samples, cache, sample_index, len(samples), image_size)
    variant = get_variant(prompt_variant)

    def add_prompt_and_image(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        from PIL import Image

        out = dict(batch)
        out["prompt"] = [build_messages(q, variant) for q in batch["question"]]
        out["image"] = [Image.fromarray(data.framed(u).image) for u in batch["unit"]]
        return out

    ds.set_transform(add_prompt_and_image)
    return data


__all__ = ["LOAD_MODES", "TrainRows", "build_rows", "question_choice"]
