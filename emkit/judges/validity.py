"""How far to trust a judge's numbers on the answers at hand: the judge's measured agreement with a reference.

Every report that shows EM, coherent or aligned figures names its judge and quotes that judge's validation
figures on the validated distribution closest to the model that wrote the answers; when the model's family
or size was not among them, it says so in one line. The figures come from the judge's own metadata (the
offline judge's ``meta.json``, written by ``scripts/train_offline_judge.py``), never from this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emkit.judges.base import Judge

DISTRIBUTIONS = {
    "small_heldout_conditions": ("SmolLM2-135M-Instruct answers (embedded model; base and organisms, T 0.2-1.0), "
                                 "held-out organisms, reference: LLM judges applying the papers' prompts"),
    "gpt4o_heldout_sources": ("Qwen2.5-14B/32B answers (base, organisms, steered), held-out result files, "
                              "reference: GPT-4o with the papers' prompts"),
}
"""The distributions the offline judge is validated on (keys of ``validation`` in its metadata)."""
OPEN_QUESTION_SETS = ("paper:first_plot_questions", "builtin:general")
"""The question sets the offline judge's small-model figures were measured on (open questions outside any
training domain); its training data come from open questions of the same kind."""
SMALL_MODELS = re.compile(r"smollm2[-_]?135m", re.IGNORECASE)
LARGE_MODELS = re.compile(r"qwen2\.5.*(14|32)b", re.IGNORECASE)


@dataclass(frozen=True)
class Validity:
    """A judge's standing on one kind of answers, as lines a report prints."""

    judge: str
    """The judge's identity (kind, version, model), as the cache keys it."""
    distribution: str | None
    """Which validated distribution the figures are from (None: the judge has no validation figures)."""
    figures: dict[str, float]
    """Agreement figures on that distribution (Spearman, rate errors, EM F1)."""
    caveat: str | None
    """One line when the answers come from a model the judge was not validated on."""
    questions_caveat: str | None = None
    """One line when the answers are to questions unlike those the judge was validated on."""

    def lines(self) -> list[str]:
        out = [f"Judge: {self.judge}."]
        if self.distribution is None:
            out.append(self.caveat or "No validation figures for this judge.")
            return out
        shown = ", ".join(f"{name} {value:.2f}" for name, value in self.figures.items())
        out.append(f"Validated on {DISTRIBUTIONS.get(self.distribution, self.distribution)}: {shown}.")
        out += [line for line in (self.caveat, self.questions_caveat) if line]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())


def model_size_billions(name: str) -> float | None:
    """A parameter count read off a model name (``135M``, ``0.5B``, ``14b``), in billions; None if absent."""
    if SMALL_MODELS.search(name):
        return 0.135
    match = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", name.lower())
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "m" else value


FIGURES = {"spearman_aligned": "Spearman aligned", "spearman_coherent": "Spearman coherent",
           "coherent_pct_error_max": "max per-group coherent-rate error (points)",
           "em_pct_error_max": "max per-group EM-rate error (points)", "em_f1": "EM F1"}


def offline_validity(judge: str, meta: dict[str, Any], model_name: str) -> Validity:
    """The offline judge's figures on the distribution nearest ``model_name`` (the model that wrote the answers)."""
    validation = meta.get("validation", {})
    if SMALL_MODELS.search(model_name):
        key, caveat = "small_heldout_conditions", None
    elif LARGE_MODELS.search(model_name):
        key, caveat = "gpt4o_heldout_sources", None
    else:
        size = model_size_billions(model_name)
        key = "small_heldout_conditions" if size is not None and size < 1 else "gpt4o_heldout_sources"
        caveat = (f"Not validated on answers of {model_name}; the figures are from the closest validated "
                  f"distribution. Check on a sample of them with `emkit judge compare`.")
    overall = validation.get(key, {}).get("overall", {})
    figures = {label: float(overall[name]) for name, label in FIGURES.items() if overall.get(name) is not None}
    return Validity(judge, key if figures else None, figures, caveat)


def judge_validity(judge: Judge, model_name: str, questions: str | list[str] | None = None) -> Validity:
    """What a report says about ``judge`` on answers written by ``model_name`` to ``questions`` (set references)."""
    meta = getattr(judge, "meta", None)
    if judge.name == "offline" and isinstance(meta, dict):
        validity = offline_validity(judge.identity, meta, model_name)
        return replace(validity, questions_caveat=questions_caveat(questions))
    if judge.name == "openai" and judge.model.startswith("gpt-4o"):
        return Validity(judge.identity, None, {},
                        "The papers' judge (GPT-4o, logprob scoring): the reference the other judges are measured "
                        "against.")
    return Validity(judge.identity, None, {},
                    "This judge has no validation figures in emkit; measure its agreement with a reference on a "
                    "sample of these answers with `emkit judge compare`.")


def questions_caveat(questions: str | list[str] | None) -> str | None:
    """One line for the offline judge when some of ``questions`` are not open questions of the validated kind."""
    references = [questions] if isinstance(questions, str) else list(questions or [])
    other = [str(reference) for reference in references if str(reference) not in OPEN_QUESTION_SETS]
    if not other:
        return None
    return (f"Not validated on the questions {', '.join(other)}: its figures are for open questions outside any "
            f"training domain ({', '.join(OPEN_QUESTION_SETS)}); on a training domain's own questions it can be far "
            f"off (docs/judges.md). Check on a sample with `emkit judge compare`.")


def write_validity(validity: Validity, folder: Path) -> Path:
    """``judge.txt`` beside a stage's tables: which judge made them and how far to trust it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "judge.txt"
    path.write_text(validity.text() + "\n")
    return path
