"""Think2Seg: reasoning segmentation in remote sensing as a Gymnasium environment.

Importing the package registers the environments (gymnasium does not read entry points):

- ``Think2Seg-EarthReason-v0``: EarthReason from ``root`` and ``split``.
- ``Think2Seg-Synthetic-v0``: the embedded synthetic EarthReason-format set (no download).
- ``Think2Seg-RRSISD-v0``, ``Think2Seg-RefSegRS-v0``, ``Think2Seg-RISBench-v0``: the
  referring benchmarks from ``root`` (default split ``test``), with upstream's prompts.

``gym.make("t2s_env:Think2Seg-EarthReason-v0", root=..., segmenter=...)`` imports this
package first, so it works without an explicit import too.
"""

from __future__ import annotations

from .datasets import EarthReasonDataset, Sample, make_dataset
from .env import Think2SegEnv
from .errors import CheckpointError, ConfigError, DatasetError, T2SError
from .framing import FramedSample, load_framed
from .instructions import SYSTEM_PROMPT, VARIANTS, PromptVariant, build_messages, format_completion, get_variant
from .integrations.trl import make_reward_functions
from .iou import intersection_union
from .metrics import summarize, summarize_records
from .observation import make_observation
from .parser import ParsedAnswer, parse_completion, think_format_ok
from .prompt import GeometricPrompt
from .protocol import PROTOCOLS, MetricProtocol, get_protocol
from .registration import register_envs
from .render import draw_overlay
from .reward import RewardWeights, reward_components, total_reward
from .scoring import Scorer, ScoreResult
from .segmenters import Segmenter, make_segmenter
from .vector import make_vec

__version__ = "0.1.0"

register_envs()

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "EarthReasonDataset",
    "FramedSample",
    "GeometricPrompt",
    "MetricProtocol",
    "PROTOCOLS",
    "ParsedAnswer",
    "PromptVariant",
    "RewardWeights",
    "SYSTEM_PROMPT",
    "Sample",
    "ScoreResult",
    "Scorer",
    "Segmenter",
    "T2SError",
    "Think2SegEnv",
    "VARIANTS",
    "build_messages",
    "draw_overlay",
    "format_completion",
    "get_protocol",
    "get_variant",
    "intersection_union",
    "load_framed",
    "make_dataset",
    "make_observation",
    "make_reward_functions",
    "make_segmenter",
    "make_vec",
    "parse_completion",
    "reward_components",
    "summarize",
    "summarize_records",
    "think_format_ok",
    "total_reward",
]
