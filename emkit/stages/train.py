"""``emkit train``: train (or resume) an organism: a LoRA preset, a full fine-tune or a steering vector.

The config is :class:`emkit.train.config.TrainConfig` and the trainer :func:`emkit.train.loop.train`
(beside it in :mod:`emkit.train`); this stage is their entry point for the command line and recipes.
"""

from __future__ import annotations

from emkit.train import TrainConfig, TrainResult, train

CONFIG = TrainConfig


def run(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train (or resume) the run ``config`` describes; a finished run is returned as it is, not trained again."""
    return train(config, show_progress=show_progress)


def summary_lines(result: TrainResult, config: TrainConfig) -> list[str]:
    """How many steps were trained, and where the weights are."""
    return [f"trained {result.steps} steps; weights in {result.final_path}"]
