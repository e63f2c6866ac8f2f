"""Adapters for training engines: trl (:mod:`.trl`, its training rows :mod:`.trl_rows`), verl (:mod:`.verl`) and
EasyR1 (:mod:`.easyr1`).

trl calls reward functions with the completions and the dataset's columns; verl and EasyR1
call a plain reward function with the completion text and a ground-truth *reference*
(:mod:`.refs`: a JSON string naming the image, the mask and the protocol frame), never with
pixels. The adapters resolve references, group completions by image so each image is
encoded once, and score through a local :class:`~t2s_env.scoring.Scorer` or the ``t2s
serve`` service (:class:`~t2s_env.remote.RemoteScorer`).

The adapter modules use absolute imports only: verl and EasyR1 load them by file path.
"""
