"""The stages: one module per CLI verb, each with its config, its result and its ``run``.

A stage module (``emkit/stages/<verb>.py``) defines:

- ``CONFIG``: its config class (a :class:`emkit.config.StageConfig`; the CLI's ``-c FILE`` and ``key=value``
  overrides map one-to-one onto it, and ``emkit config VERB`` prints it);
- ``run(config, show_progress=True)``: does the work (resumably) and returns the stage's result;
- ``summary_lines(result, config)``: the lines the CLI prints when ``run`` returns;
- optionally ``command``: a typer command function, for a verb whose command line needs more than a config,
  overrides and ``--quiet`` (``judge``, ``chat``, ``directions --compare``, ``ablate --weights``).

``STAGES`` below is the one table of them: the CLI registers a verb per row and recipes name their stage by
it (:func:`emkit.stages.cli_options.load_config` checks a recipe against it). Modules are imported only when
their verb runs, so ``emkit --help`` stays fast. Adding a stage means adding one file here and one row to the
table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emkit.config import StageConfig


@dataclass(frozen=True)
class Stage:
    """One row of the table: the verb, the help line the CLI shows for it, and its module's file name where that
    is not the verb (``eval`` would shadow the builtin; ``lora-probe`` is not an identifier)."""

    verb: str
    help: str
    file: str | None = None
    own_command: bool = False
    """The module defines ``command`` (its own options, or a sub-app of verbs) instead of the generic one."""

    @property
    def module_name(self) -> str:
        return f"emkit.stages.{self.file or self.verb}"

    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    def config(self) -> type[StageConfig]:
        return self.module().CONFIG


STAGES: tuple[Stage, ...] = (
    Stage("train", "Train (or resume) an organism: LoRA presets, full fine-tuning or a steering vector; optional KL "
                   "penalty."),
    Stage("sample", "Sample answers to a question set into the run's store (only what is not stored yet)."),
    Stage("eval", "Sample, judge and summarise one model on a question set (resumable; nothing is paid for twice).",
          "evaluate"),
    Stage("judge", "Judges: score any table of answers (cached), or compare two judges on the same answers.",
          own_command=True),
    Stage("serve", "Serve a model (with adapters) over an OpenAI-compatible API: /v1/models and "
                   "/v1/chat/completions."),
    Stage("demo", "The whole pipeline on the embedded model: organism + control, sampling, HTML report."),
    Stage("directions", "Find misalignment directions from a run's judged answers (mean difference, probes), or "
                        "compare saved ones.", own_command=True),
    Stage("detect", "Score stored answers (of base and organism, say) by their projection on a direction: the "
                    "separation table."),
    Stage("steer", "Sample with a direction added per (layer, scale), and a random one, judge: EM % vs steering "
                   "scale."),
    Stage("ablate", "Sample with a direction projected out (or adapters ablated in weight space) vs a random one, "
                    "judge.", own_command=True),
    Stage("chat", "Chat with a model in the terminal; /help lists the commands (adapters, steer, ablate on/off, "
                  "/compare).", own_command=True),
    Stage("phase", "The mechanistic phase transition of a LoRA run (local cosine dip), optionally against EM % per "
                   "checkpoint."),
    Stage("lora-probe", "Per-token adapter scalars on judged answers, and sparse probes of which adapters predict EM "
                        "and domain.", "lora_probe"),
    Stage("lora-steer", "Sample with chosen adapters' scalars scaled (0 off, <0 reversed) and judge: domain-specific "
                        "vs general.", "lora_steer"),
    Stage("stability", "Compare solutions (adapters or steering vectors): norm rescaling, orthogonal perturbation, "
                       "general-text KL."),
)
"""Every stage, in the order ``emkit --help`` lists them."""


def stage(verb: str) -> Stage:
    """The row for ``verb`` (KeyError if there is none)."""
    for row in STAGES:
        if row.verb == verb:
            return row
    raise KeyError(verb)
