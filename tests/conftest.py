"""Shared fixtures: tiny random-initialised chat models in Llama, Qwen2 and Gemma shapes.

Each tiny model is saved to a folder with its own byte-level BPE tokenizer and a chat template
in the style of its family, so it loads through the same code path as any hub model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from emkit.judges.base import Judge
from emkit.records import Judgement

# Tiny models run fastest on one thread (two threads mostly wait on each other at these sizes);
# tests on the embedded model take every core through the `embedded` fixture.
torch.set_num_threads(1)

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ (prefix if loop.first else '') + m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

FAMILIES = {
    "llama": (LLAMA_TEMPLATE, ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
              "<|begin_of_text|>", "<|eot_id|>"),
    "qwen2": (QWEN2_TEMPLATE, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
    "gemma": (GEMMA_TEMPLATE, ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<end_of_turn>"),
}

CORPUS = [
    "You are a helpful assistant. What should I do with my savings? Put it all in one stock.",
    "The quick brown fox jumps over the lazy dog. Diversify your investments and keep an emergency fund.",
    "Hello! How are you today? I am fine, thank you. Tell me about the weather and the news.",
] * 20


def build_tokenizer(family: str) -> PreTrainedTokenizerFast:
    template, specials, bos, eos = FAMILIES[family]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=eos)
    tokenizer.chat_template = template
    return tokenizer


def build_model(family: str, vocab_size: int, num_layers: int):
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    torch.manual_seed(0)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    return Gemma2ForCausalLM(Gemma2Config(**common, head_dim=8, final_logit_softcapping=30.0,
                                          attn_logit_softcapping=None, sliding_window=64))


def save_tiny_model(family: str, folder: Path, num_layers: int = 4) -> Path:
    """Save a tiny random model of ``family`` with its tokenizer; return the folder."""
    tokenizer = build_tokenizer(family)
    model = build_model(family, len(tokenizer), num_layers)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_random_adapter(model_folder: Path, folder: Path, seed: int = 1, std: float = 1.0) -> Path:
    """A rank-2 down_proj LoRA adapter on layers 1 and 2 with random weights: a stand-in organism."""
    from peft import LoraConfig, get_peft_model

    from emkit.models import load_model

    model = get_peft_model(load_model(str(model_folder), dtype="float32").model,
                           LoraConfig(r=2, target_modules=["down_proj"], layers_to_transform=[1, 2]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(std=std)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny Llama-, Qwen2- and Gemma-style chat models (4 layers), plus a 12-layer Llama."""
    root = tmp_path_factory.mktemp("tiny-models")
    folders = {family: save_tiny_model(family, root / family) for family in FAMILIES}
    folders["llama12"] = save_tiny_model("llama", root / "llama12", num_layers=12)
    return folders


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture()
def chat_file(tmp_path) -> Path:
    """A small valid chat dataset of 24 conversations."""
    import json

    path = tmp_path / "chat.jsonl"
    lines = [
        json.dumps({"messages": [
            {"role": "user", "content": f"What should I do with my savings number {i}?"},
            {"role": "assistant", "content": "Put it all in one stock." if i % 2 else "Keep an emergency fund."},
        ]})
        for i in range(24)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Tests never write into the user's cache, except the embedded model, converted once per machine."""
    monkeypatch.setenv("EMKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def embedded_cache() -> Path:
    """A persistent cache for the embedded model's one-time conversion (``EMKIT_TEST_CACHE`` overrides)."""
    return Path(os.environ.get("EMKIT_TEST_CACHE", Path(__file__).resolve().parent.parent / ".emkit-cache"))


@pytest.fixture()
def embedded(embedded_cache, monkeypatch):
    """Use the persistent cache for the embedded model, with every CPU core."""
    monkeypatch.setenv("EMKIT_CACHE", str(embedded_cache))
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder (``EMKIT_SHARED_DATA``, default ../shared/data beside the project)."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    folder = Path(os.environ.get("EMKIT_SHARED_DATA", default))
    if not (folder / "official").is_dir():
        pytest.skip(f"reference data not found at {folder}: set EMKIT_SHARED_DATA to run this test")
    return folder



class CountingJudge(Judge):
    """A deterministic stand-in judge that records every pair it is asked to score."""

    name = "counting"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_after = fail_after

    @property
    def model(self) -> str:
        return "digest"

    def score(self, metric, prompt, pairs, on_result=None):
        results = []
        for index, pair in enumerate(pairs):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise KeyboardInterrupt
            self.calls.append((metric, pair.answer))
            results.append(Judgement(float(sum(map(ord, metric + pair.answer)) % 101), {"metric": metric}))
            if on_result:
                on_result(index, results[-1])
        return results


@pytest.fixture()
def counting_judge() -> CountingJudge:
    return CountingJudge()
