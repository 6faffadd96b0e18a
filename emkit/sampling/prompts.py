"""What is sampled: one prompt item per (question, paraphrase, draw), its chat-templated prompt and its seed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from emkit.questions import Question


@dataclass(frozen=True)
class PromptItem:
    """One answer to generate: a question paraphrase and the index of the draw."""

    question: Question
    paraphrase_index: int
    sample_index: int

    @property
    def text(self) -> str:
        return self.question.paraphrases[self.paraphrase_index]

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.question.id, self.paraphrase_index, self.sample_index)


def prompt_items(questions: Iterable[Question], samples_per_paraphrase: int | None = None,
                 plain_only: bool = False) -> list[PromptItem]:
    """Every draw of every paraphrase, in question order (``samples_per_paraphrase`` unset: each question's own
    count; ``plain_only``: JSON and template variants left out)."""
    return [
        PromptItem(question, p, s)
        for question in questions if question.variant == "plain" or not plain_only
        for p in range(len(question.paraphrases))
        for s in range(samples_per_paraphrase or question.samples_per_paraphrase)
    ]


def item_seed(seed: int, item: PromptItem) -> int:
    """A per-answer seed for backends that seed each request: fixed by the run's seed and the answer's key alone,
    so a resumed run draws what an uninterrupted one would have."""
    digest = hashlib.sha256(json.dumps([seed, *item.key]).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def render_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The chat-templated prompt, ending where the assistant's answer begins."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
