"""TensorBoard output of a finished run: metrics as scalars and a grid of sample overlays.

One event folder per run (``<out>/tb/<run_id>``), so ``tensorboard --logdir <out>/tb``
lists runs side by side. Tiles are drawn while the run scores its first N samples (the
only masks the harness keeps), with :func:`t2s_env.render.draw_overlay`: the image, the
GT outline (yellow), the predicted mask (blue) and the prompts (red boxes, green points).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from t2s_env.render import draw_overlay, image_grid

TILE_SIZE = 280
SCALARS = ("gIoU", "cIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "N-Acc", "mean_reward", "n_failed")


def make_tile(
    image: np.ndarray,
    gt_mask: np.ndarray,
    pred_mask: np.ndarray | None,
    prompts: Sequence[Mapping[str, Any]],
    caption: str,
    size: int = TILE_SIZE,
    question: str | None = None,
) -> np.ndarray:
    """One overlay, downscaled to ``size`` at once so that kept tiles stay small."""
    overlay = draw_overlay(image, pred_mask=pred_mask, gt_mask=gt_mask, prompts=prompts, empty_gt=False)
    tile = cv2.resize(overlay, (size, size), interpolation=cv2.INTER_AREA)
    # Text (caption, question, the empty-GT tag) is drawn after downscaling so that it stays legible.
    return draw_overlay(tile, caption=caption, question=question, empty_gt=not np.any(gt_mask))


def jpeg_image_summary(tag: str, image: np.ndarray, quality: int = 90):
    """An image summary holding JPEG bytes (TensorBoard sniffs the format).

    ``SummaryWriter.add_image`` always encodes PNG, and without TensorFlow the event
    writer checksums every byte in pure Python (~0.2 s per MB): a PNG grid of aerial tiles
    (~3 MB) costs a second per run, its JPEG a tenth of that.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the sample grid as JPEG")
    h, w = image.shape[:2]
    encoded = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=buf.tobytes())
    return Summary(value=[Summary.Value(tag=tag, image=encoded)])


def write_run(
    log_dir: Path,
    metrics: Mapping[str, Any],
    tiles: Sequence[np.ndarray],
    summary: str = "",
    columns: int = 4,
) -> None:
    """Replace ``log_dir`` with the run's scalars (step 0), its sample grid and a text
    summary. Rewriting from scratch keeps a re-finalised run from holding two copies."""
    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: slow, so lazily

    shutil.rmtree(log_dir, ignore_errors=True)
    with _writer_thread_errors_raised_here():
        _write(SummaryWriter(log_dir=str(log_dir)), metrics, tiles, summary, columns)


@contextlib.contextmanager
def _writer_thread_errors_raised_here():
    """TensorBoard writes from a thread of its own, whose error (a full disk) its writer's
    flush/close raises again here, where the caller handles it; threading would also print
    it as a traceback. Threads started in the block end silently, waited for on the way out."""
    before = set(threading.enumerate())
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.thread in before:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=10)  # they are ending: the writer closed or failed
        threading.excepthook = previous


def _write(writer: Any, metrics: Mapping[str, Any], tiles: Sequence[np.ndarray], summary: str, columns: int) -> None:
    try:
        for key in SCALARS:
            value = metrics.get(key)
            if value is not None:
                writer.add_scalar(f"metrics/{key}", float(value), 0)
        if tiles:
            grid = image_grid(list(tiles), columns=columns, tile_size=TILE_SIZE)
            writer._get_file_writer().add_summary(jpeg_image_summary("samples", grid), 0)
        if summary:
            writer.add_text("run", summary, 0)
        # The HParams plugin's table: one row per run, its columns the run's settings and
        # the metric scalars above, so runs compare side by side in TensorBoard too.
        for proto in run_hparams(metrics):
            writer._get_file_writer().add_summary(proto)
    finally:
        writer.close()


def run_hparams(metrics: Mapping[str, Any]) -> tuple:
    """HParams summaries (experiment, session start, session end) of a run: agent,
    dataset, segmenter, protocol and N as hyperparameters, the ``metrics/*`` scalars as
    its metrics."""
    from torch.utils.tensorboard.summary import hparams

    protocol = metrics.get("protocol")
    settings = {
        "agent": metrics.get("agent"),
        "dataset": metrics.get("dataset"),
        "segmenter": metrics.get("segmenter"),
        "protocol": protocol.get("name") if isinstance(protocol, Mapping) else protocol,
        "n": metrics.get("n"),
    }
    settings = {k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool)) and v is not None}
    values = {f"metrics/{k}": float(metrics[k]) for k in SCALARS if isinstance(metrics.get(k), (int, float))}
    return hparams(settings, values)


__all__ = ["SCALARS", "TILE_SIZE", "make_tile", "run_hparams", "write_run"]
