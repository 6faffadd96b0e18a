"""``sample.backend: emkit``: answers from emkit's own decoder, on a model loaded in this process.

All prompts of a run decode together with continuous batching (:mod:`emkit.decode`); each answer stops at
the model's end-of-turn token and is yielded the moment it finishes. Forward hooks attached to the model
(steering, ablation, adapter scaling) run during decoding, which is why this is the only backend for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from emkit.decode import Generated, decode_stream
from emkit.models import LoadedModel
from emkit.progress import progress_counter
from emkit.sampling.config import SampleConfig
from emkit.sampling.prompts import PromptItem, render_prompt


def generate_answers(loaded: LoadedModel, items: list[PromptItem], config: SampleConfig,
                     show_progress: bool) -> Iterator[tuple[PromptItem, Generated]]:
    """Yield each item with its answer as soon as it is finished (prompts of similar length join together)."""
    rendered = [render_prompt(loaded.tokenizer, item.text, item.question.system) for item in items]
    order = sorted(range(len(items)), key=lambda index: len(rendered[index]))
    stream = decode_stream(loaded, [rendered[index] for index in order], config.temperature, config.top_p,
                           config.max_new_tokens, config.seed, config.batch_size)
    with progress_counter(len(items), show_progress, f"sample {config.label}") as advance:
        for position, generated in stream:
            yield items[order[position]], generated
            advance(1)
