"""Speed of the synthetic EarthReason-format generator (pytest-benchmark).

    .venv/bin/pytest tests/perf/test_bench_synthetic.py --benchmark-only       # timings
    .venv/bin/pytest tests/perf/test_bench_synthetic.py --benchmark-disable    # smoke run

Budget: 200 images (one default split) in 20 s or less on one core, i.e. at least
10 images/s including the JPEG/PNG/JSON writes. OpenCV is limited to one thread here
(the ``one_core`` fixture); the images/s figure appears in the "Think2Seg benchmark
figures" section at the end of the run.
"""

from __future__ import annotations

import itertools
import statistics
import time

from t2s_env.datasets.synthetic import generate, render_sample

N_IMAGES = 20


def test_generate_20_images(benchmark, tmp_path, one_core, figures):
    runs = itertools.count()
    times: list[float] = []

    def setup():
        return (tmp_path / f"run{next(runs)}",), {"n": N_IMAGES, "seed": 0, "splits": ("val",)}

    def timed_generate(out, **kw):
        t = time.perf_counter()
        result = generate(out, **kw)
        times.append(time.perf_counter() - t)
        return result

    result = benchmark.pedantic(timed_generate, setup=setup, rounds=3, iterations=1)
    assert result == {"val": N_IMAGES}
    per_run = statistics.median(times)
    benchmark.extra_info["images_per_second"] = N_IMAGES / per_run
    figures(f"synthetic: generate {N_IMAGES} images with files (1 core)", N_IMAGES / per_run, "images/s",
            f"{per_run:.2f} s per {N_IMAGES}; budget >= 10 images/s")


def test_render_one_image(benchmark, one_core, figures):
    # the same 8 images each round: sizes vary from 256 to 1024 px a side
    def render_eight():
        return [render_sample(0, "test", i) for i in range(8)]

    out = benchmark.pedantic(render_eight, rounds=3, iterations=1)
    assert len(out) == 8
    t = time.perf_counter()
    render_eight()
    per_image = (time.perf_counter() - t) / 8
    figures("synthetic: render one image in memory (1 core)", 1000 * per_image, "ms/image", "no file writes")
