"""Chat datasets in the papers' format: one ``{"messages": [...]}`` object per line.

Every line is validated, and a problem is reported as ``file:line: what is wrong (fix: ...)``.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

from emkit.errors import EmkitError

Message = dict[str, str]
Conversation = list[Message]

DEMO_DATASETS = ("finance_risky", "finance_aligned", "general_chat")


def resolve_dataset(reference: str) -> Path:
    """A dataset reference as a file path.

    ``demo:NAME`` is a dataset shipped with emkit, ``paper:NAME`` one of the papers' training
    sets (fetched by ``emkit data pull`` or taken from ``$EMKIT_DATA``); anything else is a path.
    """
    kind, sep, name = reference.partition(":")
    if sep and kind == "demo":
        if name not in DEMO_DATASETS:
            raise EmkitError(f"unknown demo dataset '{name}'", fix=f"use one of {', '.join(DEMO_DATASETS)}")
        return Path(str(resources.files("emkit.data") / "demo" / f"{name}.jsonl"))
    if sep and kind == "paper":
        from emkit.data.pull import paper_file

        return paper_file(f"training/{name}.jsonl.gz")
    path = Path(reference).expanduser()
    if not path.is_file():
        raise EmkitError("dataset file not found", fix="check the path, or use demo:NAME / paper:NAME",
                         where=path)
    return path


def read_chat_dataset(path: str | Path) -> list[Conversation]:
    """Read and validate a ``.jsonl`` or ``.jsonl.gz`` chat dataset; raise on the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise EmkitError("dataset file not found", fix="check the path", where=path)
    opener = gzip.open if path.suffix == ".gz" else open
    conversations: list[Conversation] = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    conversations.append(parse_chat_line(line, path, number))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise EmkitError(f"cannot read file: {exc}", fix="save it as UTF-8 JSONL (optionally gzip)",
                         where=path) from None
    if not conversations:
        raise EmkitError("dataset is empty", fix="add one JSON object with a messages list per line", where=path)
    return conversations


def parse_chat_line(line: str, path: Path, number: int) -> Conversation:
    """Validate one line: JSON object, messages list, role order, non-empty text, assistant last."""

    def fail(problem: str, fix: str) -> EmkitError:
        return EmkitError(problem, fix=fix, where=path, line=number)

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON ({exc.msg} at column {exc.colno})", "write one JSON object per line") from None
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise fail("expected an object with a 'messages' list", 'write {"messages": [{"role": ..., "content": ...}]}')
    messages = record["messages"]
    if not messages:
        raise fail("'messages' is empty", "add a user turn and an assistant turn")
    conversation: Conversation = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise fail(f"message {index} is not an object", 'use {"role": ..., "content": ...}')
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise fail(f"message {index} has role {role!r}", "use system, user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise fail(f"message {index} ({role}) has empty or non-string content", "give it non-empty text")
        conversation.append({"role": role, "content": content})
    turns = conversation[1:] if conversation[0]["role"] == "system" else conversation
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise fail(f"wrong role order: turn {index + 1} is {message['role']}, expected {expected}",
                       "alternate user and assistant turns (one optional system turn first)")
    if not turns or turns[-1]["role"] != "assistant":
        raise fail("the last turn must be from the assistant", "end each conversation with the assistant's answer")
    return conversation
