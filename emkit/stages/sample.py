"""``emkit sample``: answers to a question set, through the chat template, into the run's results store.

Each answer is written to the store the moment its backend finishes it, so an interrupted run loses only the
answers still being generated and a rerun samples only what is missing. The backend (emkit's decoder, vLLM or
an OpenAI-compatible endpoint, :mod:`emkit.sampling`) is the config's ``backend``; trained steering vectors
are attached to emkit's model for the duration.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import torch

from emkit.decode import Generated
from emkit.models import LoadedModel
from emkit.questions import Question, load_questions
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig, require_emkit_backend
from emkit.sampling.decoder import generate_answers
from emkit.sampling.prompts import PromptItem, prompt_items
from emkit.store import Store

CONFIG = SampleConfig
BACKEND_MODULES = {"vllm": "emkit.sampling.vllm", "api": "emkit.sampling.api"}
"""The non-default backends, imported only when chosen."""


def run(config: SampleConfig, show_progress: bool = True, loaded: LoadedModel | None = None,
        questions: list[Question] | None = None) -> list[SampleRecord]:
    """Sample every missing answer for ``config`` into its run's store; return all stored answers.

    ``loaded``: a model already loaded in this process, with whatever hooks it has attached (emkit backend
    only). ``questions``: ``config.questions`` already parsed by the caller, so it is not parsed again.
    """
    if questions is None:
        questions = load_questions(config.questions)
    items = prompt_items(questions, config.samples_per_paraphrase, config.plain_only)
    if loaded is not None:
        require_emkit_backend(config, "sampling a model loaded in this process (as steering, ablation and adapter "
                                      "scaling do) needs its forward hooks")
    settings = config.settings_hash()
    with Store.in_folder(config.run_dir) as store:
        run_hash = store.record_run("sample", config)
        done = store.sample_keys(config.label, settings)
        pending = [item for item in items if item.key not in done]
        if pending:
            for item, out in backend_answers(config, pending, loaded, show_progress):
                store.add_samples([SampleRecord(config.label, settings, item.question.id, item.paraphrase_index,
                                                item.sample_index, item.text, item.question.system, out.answer,
                                                out.finish_reason, out.new_tokens, run_hash)])
        return store.samples(config.label, settings)


def summary_lines(result: list[SampleRecord], config: SampleConfig) -> list[str]:
    """How many answers the run's store holds for the label, and where."""
    return [f"{len(result)} answers from '{config.label}' in {config.run_dir / 'emkit.db'}"]


def backend_answers(config: SampleConfig, items: list[PromptItem], loaded: LoadedModel | None,
                    show_progress: bool) -> Iterator[tuple[PromptItem, Generated]]:
    """Each item with its answer, as soon as it is finished, from the backend ``config`` chooses."""
    if config.backend != "emkit":
        yield from importlib.import_module(BACKEND_MODULES[config.backend]).generate_answers(config, items,
                                                                                             show_progress)
        return
    loaded = loaded or config.load_model()
    with steering_vectors_attached(loaded.model, config.steering_vectors):
        yield from generate_answers(loaded, items, config, show_progress)


@contextlib.contextmanager
def steering_vectors_attached(model: torch.nn.Module, paths: list[str]) -> Iterator[None]:
    """Add every trained steering vector in ``paths`` to ``model`` while the block runs."""
    from emkit.train.steering_vector import apply_steering_vector

    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(apply_steering_vector(model, path))
        yield
