"""``emkit train`` on two CPU processes (gloo), under ``accelerate launch`` and ``torchrun``, against one process.

Two processes with the same global batch and seed end with the one-process run's weights (each
process gets half of every step's micro-batches; their gradients are summed), and a two-process
run that is killed and launched again resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import emkit
from emkit.train import TrainConfig, train
from emkit.train.checkpoints import checkpoint_steps
from emkit.train.distributed import Processes, join_processes

BIN = Path(sys.executable).parent
FSDP_CONFIG = Path(__file__).parents[1] / "configs" / "accelerate" / "fsdp.yaml"
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
"""Summing gradients in another order changes the last bits; over a few Adam steps that stays far below this."""
VARIANTS = {"sft": [], "kl": ["kl.weight=1", "kl.batch_size=3", "kl.cache_mb=0"],
            "steering-vector": ["preset=steering-vector"]}


def overrides(tiny_model, chat_file, out, variant, steps):
    kl = [f"kl.dataset={chat_file}"] if variant == "kl" else []
    return [f"model={tiny_model}", f"datasets=[{chat_file}]", f"output_dir={out}", "batch_size=3", "grad_accum=4",
            "save_every=2", "learning_rate=5e-3", "dtype=float32", "device=cpu", f"max_steps={steps}",
            *VARIANTS[variant], *kl]


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def launch(launcher: str, arguments: list[str]) -> subprocess.Popen:
    """``emkit train`` on two processes, in a session of its own (so the whole launch can be killed).

    ``launcher``: accelerate, torchrun, or fsdp (accelerate with the shipped FSDP config).
    """
    accelerate = [str(BIN / "accelerate"), "launch", "--num_processes", "2", "--main_process_port", free_port()]
    command = {"accelerate": [*accelerate, "--multi_gpu"], "fsdp": [*accelerate, "--config_file", str(FSDP_CONFIG)],
               "torchrun": [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", free_port()]}[launcher]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([*command, "-m", "emkit.cli", "train", "--quiet", *arguments], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_after_checkpoint_2(process: subprocess.Popen, run: Path) -> None:
    """Kill the whole launch once checkpoint-2 of ``run`` is complete, before the run finishes."""
    deadline = time.monotonic() + 90
    while not checkpoint_steps(run / "checkpoints") or checkpoint_steps(run / "checkpoints")[-1] < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "summary.json").exists()


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output


def assert_same_weights(first: Path, second: Path) -> None:
    files = sorted(path.name for path in first.glob("*.safetensors"))
    assert files and files == sorted(path.name for path in second.glob("*.safetensors"))
    for name in files:
        a, b = load_file(first / name), load_file(second / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], **TOLERANCE, msg=key)


def test_two_processes_match_one_and_a_killed_launch_resumes(tiny_model, chat_file, tmp_path):
    single = train(TrainConfig.load(overrides=overrides(tiny_model, chat_file, tmp_path / "one", "sft", 24)),
                   show_progress=False)
    run = tmp_path / "two"
    arguments = overrides(tiny_model, chat_file, run, "sft", 24)
    kill_after_checkpoint_2(launch("accelerate", arguments), run)
    kept = {step: (run / "checkpoints" / f"checkpoint-{step}" / "state.json").stat().st_mtime_ns
            for step in checkpoint_steps(run / "checkpoints")}
    finish(launch("accelerate", arguments))
    assert checkpoint_steps(run / "checkpoints") == list(range(0, 25, 2))
    for step, stamp in kept.items():  # resumed from the last checkpoint: none of the earlier ones was written again
        assert (run / "checkpoints" / f"checkpoint-{step}" / "state.json").stat().st_mtime_ns == stamp
    assert_same_weights(single.final_path, run / "adapter")
    logged = [line for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert len(logged) == 24


@pytest.mark.parametrize("variant", ["kl", "steering-vector"])
def test_kl_and_steering_vector_training_match_on_two_processes(tiny_model, chat_file, tmp_path, variant):
    single = train(TrainConfig.load(overrides=overrides(tiny_model, chat_file, tmp_path / "one", variant, 4)),
                   show_progress=False)
    finish(launch("torchrun", overrides(tiny_model, chat_file, tmp_path / "two", variant, 4)))
    assert_same_weights(single.final_path, tmp_path / "two" / single.final_path.name)
    two = [line for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines() if line]
    assert [record["loss"] for record in single.history] == pytest.approx([json.loads(line)["loss"] for line in two])


def test_one_process_joins_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    processes = join_processes("auto", "lora-all", 3)
    assert processes == Processes() and processes.main
    assert processes.share([1, 2, 3]) == [1, 2, 3] and processes.sum_floats([1.5]) == [1.5]
    assert Processes(rank=1, world=2).share([0, 1, 2, 3, 4]) == [1, 3]


def test_fsdp_full_fine_tune_matches_one_process_and_a_killed_launch_resumes(tiny_model, chat_file, tmp_path):
    arguments = [*overrides(tiny_model, chat_file, tmp_path / "one", "sft", 8), "preset=full", "learning_rate=1e-3"]
    single = train(TrainConfig.load(overrides=arguments), show_progress=False)
    run = tmp_path / "sharded"
    arguments = [*overrides(tiny_model, chat_file, run, "sft", 8), "preset=full", "learning_rate=1e-3"]
    kill_after_checkpoint_2(launch("fsdp", arguments), run)
    assert json.loads((run / "checkpoints" / "checkpoint-2" / "state.json").read_text())["sharded"]
    finish(launch("fsdp", arguments))
    assert checkpoint_steps(run / "checkpoints") == [0, 2, 4, 6, 8]
    assert_same_weights(single.final_path, run / "model")
    trained = load_file(run / "model" / "model.safetensors")
    untrained = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(trained[key], untrained[key]) for key in untrained)  # it did train


def test_fsdp_kl_term_matches_one_process_with_a_cached_reference(tiny_model, chat_file, tmp_path):
    arguments = [*overrides(tiny_model, chat_file, tmp_path / "one", "kl", 4), "preset=full", "kl.cache_mb=64"]
    single = train(TrainConfig.load(overrides=arguments), show_progress=False)
    arguments = [*overrides(tiny_model, chat_file, tmp_path / "two", "kl", 4), "preset=full", "kl.cache_mb=64"]
    finish(launch("fsdp", arguments))
    assert_same_weights(single.final_path, tmp_path / "two" / "model")
    two = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines() if line]
    assert [record["kl"] for record in single.history] == pytest.approx([record["kl"] for record in two], rel=1e-4)


@pytest.mark.parametrize(("arguments", "message"), [
    (["preset=lora-all"], "FSDP shards full fine-tunes, and preset lora-all"),
    (["preset=full", "grad_accum=3"], "under FSDP every process runs the same micro-batches per step, but grad_acc"),
    (["preset=full", "kl.weight=1", "kl.cache_mb=0"], "under FSDP the KL reference must be cached"),
])
def test_what_fsdp_cannot_shard_is_refused_in_one_line(tiny_model, chat_file, tmp_path, arguments, message):
    kl = [f"kl.dataset={chat_file}"] if any(a.startswith("kl.") for a in arguments) else []
    base = [a for a in overrides(tiny_model, chat_file, tmp_path / "run", "sft", 2) if not a.startswith("grad_accum")]
    process = launch("fsdp", [*base, *([] if "grad_accum=3" in arguments else ["grad_accum=2"]), *arguments, *kl])
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"error: {message}" in output, output
    assert f'File "{Path(emkit.__file__).parent}' not in output, output  # the launcher's traceback, never emkit's
