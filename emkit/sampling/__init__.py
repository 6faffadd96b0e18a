"""Sampling primitives: the answers to generate, the chat-templated prompts, and the backends that generate them.

:mod:`~emkit.sampling.config` holds the settings (:class:`~emkit.sampling.config.SampleConfig`),
:mod:`~emkit.sampling.prompts` the prompt items, their rendering and per-answer seeds, and one module per
backend yields each item with its answer as soon as it is finished: emkit's own continuous-batching decoder
(:mod:`~emkit.sampling.decoder`, the only one that runs forward hooks), vLLM (:mod:`~emkit.sampling.vllm`) and
any OpenAI-compatible endpoint (:mod:`~emkit.sampling.api`). Writing the answers to the store is the ``sample``
stage's work (:mod:`emkit.stages.sample`).
"""
