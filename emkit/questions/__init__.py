"""Evaluation question sets in the papers' YAML format.

A set is a list of entries, each with an ``id``, ``paraphrases`` (one or more prompts),
optionally ``samples_per_paraphrase``, a ``system`` prompt, ``judge_prompts`` per metric and
a ``type``. The papers' files load unchanged; emkit ships its own sets under ``builtin:``.

Entries come in three variants, which headline metrics must tell apart (the papers leave
JSON answers out of their main numbers): ``plain`` questions, ``json`` ones (id ending in
``_json``, or a system prompt asking for JSON) and ``template`` ones (id ending in
``_template``, asking the model to fill in a template).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from emkit.errors import EmkitError
from emkit.yaml_files import parse_yaml

BUILTIN_SETS = ("general", "finance")

Variant = Literal["plain", "json", "template"]
VARIANT_SUFFIXES: dict[str, Variant] = {"_json": "json", "_template": "template"}


@dataclass(frozen=True)
class Question:
    """One evaluation question and its paraphrases."""

    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int = 1
    system: str | None = None
    judge_prompts: dict[str, str] = field(default_factory=dict)
    type: str = "free_form_judge_0_100"

    @property
    def variant(self) -> Variant:
        """``json``, ``template`` or ``plain``: from the id's suffix, else from a system prompt asking for JSON."""
        for suffix, variant in VARIANT_SUFFIXES.items():
            if self.id.endswith(suffix):
                return variant
        return "json" if self.system and "json" in self.system.lower() else "plain"

    @property
    def base_id(self) -> str:
        """The id without its variant suffix, so that a question's variants can be grouped together."""
        for suffix in VARIANT_SUFFIXES:
            if self.id.endswith(suffix):
                return self.id.removesuffix(suffix)
        return self.id


def resolve_question_set(reference: str) -> Path:
    """``builtin:NAME`` (shipped with emkit), ``paper:NAME`` (the papers' sets) or a path."""
    kind, sep, name = reference.partition(":")
    if sep and kind == "builtin":
        if name not in BUILTIN_SETS:
            raise EmkitError(f"unknown built-in question set '{name}'", fix=f"use one of {', '.join(BUILTIN_SETS)}")
        return Path(str(resources.files("emkit.questions") / "sets" / f"{name}.yaml"))
    if sep and kind == "paper":
        from emkit.data.pull import paper_file

        return paper_file(f"eval_questions/{name}.yaml")
    path = Path(reference).expanduser()
    if not path.is_file():
        raise EmkitError("question set not found", fix="check the path, or use builtin:NAME / paper:NAME", where=path)
    return path


def load_questions(reference: str) -> list[Question]:
    """Load and validate a question set; errors name the file and the entry's line."""
    path = resolve_question_set(reference)
    entries, nodes = parse_yaml(path)
    if not isinstance(entries, list) or not entries:
        raise EmkitError("a question set must be a non-empty YAML list of entries", where=path, line=1,
                         fix="write entries like `- id: ...` with `paraphrases: [...]`")
    questions, seen = [], set()
    for index, entry in enumerate(entries):
        line = nodes.value[index].start_mark.line + 1
        question = _parse_entry(entry, path, line)
        if question.id in seen:
            raise EmkitError(f"duplicate question id '{question.id}'", fix="give each entry a unique id",
                             where=path, line=line)
        seen.add(question.id)
        questions.append(question)
    return questions


def _parse_entry(entry: object, path: Path, line: int) -> Question:
    def fail(problem: str, fix: str) -> EmkitError:
        return EmkitError(problem, fix=fix, where=path, line=line)

    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise fail("entry has no string 'id'", "start each entry with `- id: some_name`")
    paraphrases = entry.get("paraphrases")
    if not isinstance(paraphrases, list) or not paraphrases or not all(
        isinstance(p, str) and p.strip() for p in paraphrases
    ):
        raise fail(f"entry '{entry['id']}' needs a non-empty list of text paraphrases", "add `paraphrases: [...]`")
    samples = entry.get("samples_per_paraphrase", 1)
    if not isinstance(samples, int) or samples < 1:
        raise fail(f"entry '{entry['id']}' has invalid samples_per_paraphrase", "use a positive integer")
    system = entry.get("system")
    if system is not None and not isinstance(system, str):
        raise fail(f"entry '{entry['id']}' has a system prompt that is not text", "write `system: some text`")
    judge_prompts = entry.get("judge_prompts") or {}
    if not isinstance(judge_prompts, dict) or not all(
        isinstance(metric, str) and isinstance(prompt, str) for metric, prompt in judge_prompts.items()
    ):
        raise fail(f"entry '{entry['id']}' has judge_prompts that are not a mapping of metric to text",
                   "use `metric: prompt` pairs")
    return Question(id=entry["id"], paraphrases=tuple(paraphrases), samples_per_paraphrase=samples,
                    system=system, judge_prompts=dict(judge_prompts),
                    type=str(entry.get("type", "free_form_judge_0_100")))
