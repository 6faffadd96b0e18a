import json

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from emkit.errors import EmkitError
from emkit.models import ADAPTER_FILE, load_model
from emkit.train import TrainConfig
from emkit.train.checkpoints import (
    STATE_FILE,
    checkpoint_folders,
    checkpoint_steps,
    replace_folder,
    restore_latest_checkpoint,
    save_checkpoint,
)
from emkit.train.distributed import Processes
from emkit.train.solutions import make_solution
from emkit.train.steering_vector import VECTOR_FILE


def touch(folder, *names):
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("{}")


def test_only_named_folders_holding_the_file_are_complete(tmp_path):
    touch(tmp_path / "checkpoint-0", STATE_FILE, ADAPTER_FILE)
    touch(tmp_path / "checkpoint-10", STATE_FILE)
    touch(tmp_path / "checkpoint-2", ADAPTER_FILE)
    touch(tmp_path / "checkpoint-4.partial", STATE_FILE, ADAPTER_FILE)
    touch(tmp_path / "checkpoint-final", STATE_FILE)
    assert checkpoint_steps(tmp_path) == [0, 10]
    assert list(checkpoint_folders(tmp_path, holding=ADAPTER_FILE)) == [0, 2]
    assert checkpoint_folders(tmp_path)[10] == tmp_path / "checkpoint-10"
    assert checkpoint_steps(tmp_path / "absent") == []


def test_a_failed_write_leaves_the_previous_folder_whole(tmp_path):
    final = tmp_path / "adapter"
    replace_folder(final, lambda partial: (partial / "weights").write_text("first"))

    def failing(partial):
        (partial / "weights").write_text("second")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replace_folder(final, failing)
    assert (final / "weights").read_text() == "first"
    replace_folder(final, lambda partial: (partial / "weights").write_text("third"))
    assert (final / "weights").read_text() == "third" and not (tmp_path / "adapter.partial").exists()


def steering_setup(tiny_model, tmp_path):
    config = TrainConfig.load(overrides=[f"model={tiny_model}", "datasets=[unused.jsonl]", "preset=steering-vector",
                                         f"output_dir={tmp_path}"])
    solution = make_solution(load_model(str(tiny_model), dtype="float32").model, config)
    optimizer = torch.optim.AdamW(solution.trainable(), lr=0.1)
    return solution, optimizer, LambdaLR(optimizer, lambda step: 1 / (step + 1))


def test_the_newest_checkpoint_restores_weights_optimizer_scheduler_and_rng(tiny_model, tmp_path):
    solution, optimizer, scheduler = steering_setup(tiny_model, tmp_path)
    for step in (1, 2):
        solution.steering.vector.grad = torch.ones_like(solution.steering.vector)
        optimizer.step()
        scheduler.step()
        torch.manual_seed(step)
        save_checkpoint(tmp_path, step, solution, optimizer.state_dict(), scheduler, [{"step": step}])
    assert (tmp_path / "checkpoint-2" / VECTOR_FILE).is_file()
    saved, expected_draw = solution.steering.vector.detach().clone(), torch.rand(3)

    fresh, fresh_optimizer, fresh_scheduler = steering_setup(tiny_model, tmp_path)
    step, history = restore_latest_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler, Processes())
    assert (step, history) == (2, [{"step": 2}])
    assert torch.equal(fresh.steering.vector, saved)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 2 and fresh_scheduler.last_epoch == 2
    assert torch.equal(torch.rand(3), expected_draw)


def test_a_checkpoint_from_a_sharded_run_is_refused_without_fsdp(tiny_model, tmp_path):
    solution, optimizer, scheduler = steering_setup(tiny_model, tmp_path)
    save_checkpoint(tmp_path, 3, solution, optimizer.state_dict(), scheduler, [])
    state = json.loads((tmp_path / "checkpoint-3" / STATE_FILE).read_text())
    (tmp_path / "checkpoint-3" / STATE_FILE).write_text(json.dumps({**state, "sharded": True}))
    with pytest.raises(EmkitError, match="written by a run launched with FSDP"):
        restore_latest_checkpoint(tmp_path, solution, optimizer, scheduler, Processes())
