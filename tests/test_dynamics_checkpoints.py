import sys

import pytest
import torch
from dynamics_runs import train_tiny_run
from safetensors.torch import save_file

from emkit.dynamics.checkpoints import local_checkpoints, module_name, read_checkpoints
from emkit.dynamics.phase import phase_report
from emkit.errors import EmkitError
from emkit.models import ADAPTER_FILE, load_model
from emkit.sampling.config import SampleConfig
from emkit.stages.checkpoint_runs import sample_checkpoints, sample_scaled, swap_adapter_weights
from emkit.stages.phase import PhaseConfig
from emkit.store import Store


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    """A real rank1-single run of 6 steps on the tiny 4-layer model, checkpointed every step."""
    return train_tiny_run(tiny_model, tmp_path_factory.mktemp("dynamics-run"), "rank1-single", 6)


def test_reader_reads_every_checkpoint_of_a_real_run(tiny_run):
    vectors = read_checkpoints(tiny_run)
    assert vectors.steps == list(range(7))
    assert vectors.modules == ["layers.2.mlp.down_proj"]
    a, b = vectors.a["layers.2.mlp.down_proj"], vectors.b["layers.2.mlp.down_proj"]
    assert a.shape == (7, 64) and b.shape == (7, 32)  # down_proj: intermediate 64 -> hidden 32
    assert torch.count_nonzero(b[0]) == 0 and b[-1].norm() > 0  # LoRA B starts at zero, then learns
    assert read_checkpoints(tiny_run / "checkpoints", steps=[0, 3, 6]).steps == [0, 3, 6]
    report = phase_report(read_checkpoints(tiny_run), PhaseConfig(run=str(tiny_run), ks=[1]))
    assert report.norms["layers.2.mlp.down_proj"].shape == (7,)


def test_missing_steps_and_folders_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(EmkitError, match=r"no checkpoint for step\(s\) \[99\]"):
        read_checkpoints(tiny_run, steps=[99])
    with pytest.raises(EmkitError, match="no adapter checkpoints"):
        read_checkpoints(tmp_path)
    with pytest.raises(EmkitError, match="not found"):
        read_checkpoints(str(tmp_path / "absent" / "deeper"))


def test_module_names_are_shared_short_names():
    assert module_name("base_model.model.model.layers.15.mlp.down_proj") == "layers.15.mlp.down_proj"
    assert module_name("base_model.model.transformer.h.3.mlp.c_proj") == "transformer.h.3.mlp.c_proj"


class FakeHub:
    """Stands in for huggingface_hub: a repo whose files live in a local folder."""

    def __init__(self, folder, fail=None):
        self.folder, self.fail, self.downloaded = folder, fail, []

    def list_repo_files(self, repo_id, revision=None):
        if self.fail:
            raise self.fail
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())

    def hf_hub_download(self, repo_id, filename, revision=None):
        self.downloaded.append(filename)
        return str(self.folder / filename)


def write_hub_repo(folder):
    for step in (0, 10, 20):
        checkpoint = folder / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        save_file({"base_model.model.model.layers.24.mlp.down_proj.lora_A.weight": torch.ones(1, 8),
                   "base_model.model.model.layers.24.mlp.down_proj.lora_B.weight": torch.full((4, 1), float(step))},
                  checkpoint / ADAPTER_FILE)
        (checkpoint / "optimizer.pt").write_bytes(b"not read")


def test_hub_runs_download_only_the_wanted_adapters(tmp_path, monkeypatch):
    write_hub_repo(tmp_path / "repo")
    hub = FakeHub(tmp_path / "repo")
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    vectors = read_checkpoints("org/organism", steps=[10, 20])
    assert vectors.steps == [10, 20] and vectors.b["layers.24.mlp.down_proj"][:, 0].tolist() == [10.0, 20.0]
    assert hub.downloaded == [f"checkpoints/checkpoint-{s}/{ADAPTER_FILE}" for s in (10, 20)]


def test_hub_problems_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(EmkitError, match="needs huggingface_hub"):
        read_checkpoints("org/organism")
    monkeypatch.setitem(sys.modules, "huggingface_hub", FakeHub(tmp_path, fail=ConnectionError("offline")))
    with pytest.raises(EmkitError, match=r"cannot reach the Hugging Face hub.*offline"):
        read_checkpoints("org/organism")
    monkeypatch.setitem(sys.modules, "huggingface_hub", FakeHub(tmp_path))
    with pytest.raises(EmkitError, match="has no checkpoint-N"):
        read_checkpoints("org/organism")


def test_checkpoints_and_scaled_adapters_are_sampled_under_their_labels(tiny_run, tiny_model, tmp_path):
    questions = tmp_path / "q.yaml"
    questions.write_text('- id: savings\n  paraphrases: ["Savings question 3?"]\n')
    config = SampleConfig.load(overrides=[f"model={tiny_model}", f"questions={questions}", f"run_dir={tmp_path}",
                                          "temperature=0", "max_new_tokens=4", "device=cpu", "dtype=float32"])
    by_step = sample_checkpoints(tiny_run, config, every=3)
    assert list(by_step) == [0, 3, 6] and [record.model for record in by_step[3]] == ["ckpt-3"]
    scaled = sample_scaled(tiny_run, [-0.5], config)
    assert [record.model for record in scaled[-0.5]] == ["scale--0.5"]
    with Store.in_folder(tmp_path) as store:
        assert {record.model for record in store.samples()} == {"ckpt-0", "ckpt-3", "ckpt-6", "scale--0.5"}
    assert (tiny_run / "scaled" / "adapter-scale--0.5" / ADAPTER_FILE).is_file()


def test_swapping_checkpoint_weights_equals_loading_the_checkpoint(tiny_run, tiny_model):
    checkpoints = local_checkpoints(tiny_run)
    swapped = load_model(str(tiny_model), adapters=[str(checkpoints[0])], device="cpu", dtype="float32")
    swap_adapter_weights(swapped, checkpoints[6])
    loaded = load_model(str(tiny_model), adapters=[str(checkpoints[6])], device="cpu", dtype="float32")
    ids = torch.tensor([[5, 17, 29, 41, 53]])
    with torch.no_grad():
        assert torch.equal(swapped.model(input_ids=ids).logits, loaded.model(input_ids=ids).logits)
        with loaded.model.disable_adapter():
            assert not torch.allclose(loaded.model(input_ids=ids).logits, swapped.model(input_ids=ids).logits)
