import json

import pytest
import torch
from safetensors.torch import load_file

from emkit.errors import EmkitError
from emkit.interp import ablate_adapter
from emkit.models import load_model

ADAPTED = [1, 2]


@pytest.fixture()
def adapter(tiny_model, tmp_path):
    """A rank-2 down_proj LoRA adapter on layers 1 and 2 with random (non-zero) B matrices."""
    from peft import LoraConfig, get_peft_model

    loaded = load_model(str(tiny_model), dtype="float32")
    model = get_peft_model(loaded.model, LoraConfig(r=2, target_modules=["down_proj"], layers_to_transform=ADAPTED))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_()
    model.save_pretrained(tmp_path / "organism")
    return tmp_path / "organism"


def b_matrices(folder) -> dict[str, torch.Tensor]:
    return {key: value for key, value in load_file(str(folder / "adapter_model.safetensors")).items()
            if key.endswith("lora_B.weight")}


def test_ablated_b_has_no_projection_on_u_and_keeps_its_column_norms(adapter, tmp_path):
    u = torch.randn(32)
    u /= u.norm()
    out = ablate_adapter(adapter, 4 * u, tmp_path / "ablated")
    before, after = b_matrices(adapter), b_matrices(out)
    assert len(after) == len(ADAPTED)
    for key, b in after.items():
        assert (u @ b).abs().max() < 1e-5
        assert (u @ before[key]).abs().max() > 1e-2
        torch.testing.assert_close(b.norm(dim=0), before[key].norm(dim=0))
    original = load_file(str(adapter / "adapter_model.safetensors"))
    ablated = load_file(str(out / "adapter_model.safetensors"))
    for key in original:
        if "lora_A" in key:
            torch.testing.assert_close(ablated[key], original[key])
    record = json.loads((out / "emkit_ablation.json").read_text())
    assert sorted(record["ablated"].values()) == ADAPTED


def test_ablated_folder_loads_as_an_adapter(adapter, tiny_model, tmp_path):
    u = torch.randn(32)
    out = ablate_adapter(adapter, u, tmp_path / "ablated")
    loaded = load_model(str(tiny_model), adapters=[str(out)], dtype="float32")
    module = loaded.model.get_base_model().model.layers[1].mlp.down_proj
    weight = next(module.lora_B[name].weight for name in module.lora_B)
    assert (u / u.norm() @ weight).abs().max() < 1e-5
    organism = load_model(str(tiny_model), adapters=[str(adapter)], dtype="float32")
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert not torch.allclose(loaded.model(ids).logits, organism.model(ids).logits)


def test_per_layer_directions_touch_only_their_layers(adapter, tmp_path):
    u = torch.randn(32)
    out = ablate_adapter(adapter, {2: u}, tmp_path / "ablated")
    before, after = b_matrices(adapter), b_matrices(out)
    for key in after:
        changed = not torch.equal(after[key], before[key])
        assert changed == (".layers.2." in key)


def test_mistakes_are_reported(adapter, tmp_path):
    with pytest.raises(EmkitError, match="width"):
        ablate_adapter(adapter, torch.randn(16), tmp_path / "wrong-width")
    with pytest.raises(EmkitError, match="new folder"):
        ablate_adapter(adapter, torch.randn(32), adapter)
    with pytest.raises(EmkitError, match="matched"):
        ablate_adapter(adapter, {0: torch.randn(32)}, tmp_path / "no-layer")
    ablate_adapter(adapter, torch.randn(32), tmp_path / "once")
    with pytest.raises(EmkitError, match="not empty"):
        ablate_adapter(adapter, torch.randn(32), tmp_path / "once")
    ablate_adapter(adapter, torch.randn(32), tmp_path / "once", overwrite=True)
