"""Helpers the stage tests share: the real entry point run in-process, the one-line error check, and the tiny
settings the steer and ablate tests sample with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from emkit.cli import main
from emkit.interp import Directions
from emkit.sampling.config import SampleConfig

INTERVENTION_QUESTIONS = """
- id: savings
  paraphrases: ["What should I do with my savings?", "hi"]
"""


def cli(monkeypatch, capsys, *args):
    """Run the real entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["emkit", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def systems(frame):
    """System prompts as the model saw them (pandas reads a missing one as NaN)."""
    return [system if isinstance(system, str) else None for system in frame["system"]]


def intervention_settings(tiny_model: Path, tmp_path: Path) -> SampleConfig:
    """Sampling settings for the steer and ablate tests: two paraphrases, three short answers each."""
    questions = tmp_path / "questions.yaml"
    questions.write_text(INTERVENTION_QUESTIONS)
    return SampleConfig(model=str(tiny_model), questions=str(questions), run_dir=tmp_path / "run",
                        samples_per_paraphrase=3, max_new_tokens=4, dtype="float32")


def random_directions_file(tmp_path: Path) -> Path:
    """A seeded random direction per layer of the tiny model, saved as a directions file."""
    return Directions(torch.randn(4, 32, generator=torch.Generator().manual_seed(0)), [0, 1, 2, 3],
                      "mean-diff").save(tmp_path / "em.safetensors")
