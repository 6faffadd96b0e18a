"""Judge prompt templates: emkit's own, the papers', or a user's YAML file.

A template holds ``{question}`` and ``{answer}`` placeholders and asks the judge for a single
number from 0 to 100. Question sets may carry their own prompts per metric; :func:`prompt_for`
prefers those and falls back to a loaded set, so the papers' questions keep the papers' prompts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from emkit.errors import EmkitError
from emkit.questions import Question
from emkit.yaml_files import parse_yaml

PAPER_JUDGES = "eval_questions/judges.yaml"
METADATA_KEYS = frozenset({"high_score"})
"""Keys the papers' judges.yaml puts beside a prompt; they describe it and are not metrics."""


def load_judge_prompts(source: str = "builtin") -> dict[str, str]:
    """Metric -> prompt template from ``builtin`` (shipped with emkit), ``paper`` (the papers' judges.yaml)
    or a YAML file holding a mapping, or a list of one-metric mappings as in the papers' file."""
    if source == "builtin":
        path = Path(str(resources.files("emkit.judges") / "prompts.yaml"))
    elif source == "paper":
        from emkit.data.pull import paper_file

        path = paper_file(PAPER_JUDGES)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise EmkitError("judge prompts file not found", where=path,
                             fix="check the path, or use prompts=builtin or prompts=paper")
    return _read_prompts(path)


def prompt_for(question: Question, metric: str, fallback: dict[str, str]) -> str:
    """The template to judge ``metric`` on ``question``: the question's own prompt first, then ``fallback``."""
    if metric in question.judge_prompts:
        return question.judge_prompts[metric]
    if metric in fallback:
        return fallback[metric]
    known = ", ".join(sorted(fallback)) or "none"
    raise EmkitError(f"no judge prompt for metric '{metric}' (question '{question.id}'; loaded prompts: {known})",
                     fix=f"add '{metric}' under judge_prompts in the question set, or load prompts that define it")


def _read_prompts(path: Path) -> dict[str, str]:
    data, root = parse_yaml(path)
    if isinstance(data, dict) and data:
        lines = [key_node.start_mark.line + 1 for key_node, _ in root.value]
        if len(lines) != len(data):
            _raise_duplicate_key(root, path)
        entries = [({key: value}, line) for (key, value), line in zip(data.items(), lines, strict=True)]
    elif isinstance(data, list) and data:
        entries = [(item, node.start_mark.line + 1) for item, node in zip(data, root.value, strict=True)]
    else:
        raise EmkitError("judge prompts must be a non-empty mapping of metric to prompt", where=path, line=1,
                         fix="write entries like `aligned: |-` followed by the prompt text")
    prompts: dict[str, str] = {}
    for entry, line in entries:
        metric, prompt = _one_prompt(entry, path, line)
        if metric in prompts:
            raise EmkitError(f"metric '{metric}' is defined twice", fix="keep one prompt per metric",
                             where=path, line=line)
        prompts[metric] = prompt
    return prompts


def _raise_duplicate_key(root: yaml.MappingNode, path: Path) -> None:
    seen: set[str] = set()
    for key_node, _ in root.value:
        if key_node.value in seen:
            raise EmkitError(f"metric '{key_node.value}' is defined twice", fix="keep one prompt per metric",
                             where=path, line=key_node.start_mark.line + 1)
        seen.add(key_node.value)


def _one_prompt(entry: object, path: Path, line: int) -> tuple[str, str]:
    """One (metric, prompt) pair from a ``metric: prompt`` mapping, ignoring descriptive metadata keys."""
    pairs = []
    if isinstance(entry, dict):
        pairs = [(key, value) for key, value in entry.items() if key not in METADATA_KEYS]
    if len(pairs) != 1 or not isinstance(pairs[0][0], str):
        raise EmkitError("each entry must name exactly one metric and its prompt", where=path, line=line,
                         fix="write `metric: prompt text`")
    metric, prompt = pairs[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise EmkitError(f"the prompt for '{metric}' is not text", where=path, line=line,
                         fix="give the prompt as a (block) string")
    if "{answer}" not in prompt:
        raise EmkitError(f"the prompt for '{metric}' has no {{answer}} placeholder", where=path, line=line,
                         fix="put {answer} (and usually {question}) where the judged text goes")
    return metric, prompt
