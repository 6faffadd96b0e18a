"""Training model organisms: presets, assistant-only tokenisation, a resumable training loop."""

from emkit.train.config import LoraSettings, TrainConfig
from emkit.train.loop import TrainResult, train

__all__ = ["LoraSettings", "TrainConfig", "TrainResult", "train"]
