"""Training model organisms: presets, assistant-only tokenisation, solutions, a resumable training loop."""

from emkit.train.config import KLSettings, LoraSettings, SteeringSettings, TrainConfig
from emkit.train.loop import TrainResult, train

__all__ = ["KLSettings", "LoraSettings", "SteeringSettings", "TrainConfig", "TrainResult", "train"]
