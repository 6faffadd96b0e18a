"""``sample.backend: vllm`` run for real: the embedded model through vLLM's CPU engine (``make test-vllm``).

The answers land in the store, greedy answers agree with emkit's decoder on the same prompts, a
rank-1 adapter changes vLLM's answers as it changes emkit's, and a killed ``emkit sample`` resumes.
Each test prints how many answers match emkit's exactly and where the first divergence falls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed in this environment: `make test-vllm` builds one and runs "
                                   "these tests")

from emkit.models import load_model, load_tokenizer
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.stages import sample

pytestmark = pytest.mark.vllm
ENGINE = ["backend=vllm", "vllm.kv_cache_gib=1", "vllm.enforce_eager=true"]
"""A 1 GiB KV cache (vLLM's CPU engine otherwise reserves most of memory) and no compilation (a faster start)."""


def settings(run_dir, label, *extra) -> SampleConfig:
    return SampleConfig.load(overrides=["questions=builtin:general", "samples_per_paraphrase=1", "max_new_tokens=48",
                                        "temperature=0", "dtype=float32", f"run_dir={run_dir}", f"label={label}",
                                        *extra])


def agreement(ours: list[SampleRecord], theirs: list[SampleRecord]) -> tuple[int, list[int]]:
    """How many answers are identical, and for the others the token at which they first differ."""
    tokenizer = load_tokenizer("smollm2-135m")
    same, divergences = 0, []
    for a, b in zip(ours, theirs, strict=True):
        assert a.key == b.key
        if a.answer == b.answer:
            same += 1
            continue
        x, y = (tokenizer(record.answer, add_special_tokens=False)["input_ids"] for record in (a, b))
        divergences.append(next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y))))
    return same, divergences


@pytest.fixture()
def rank1_adapter(embedded, tmp_path):
    """A rank-1 rsLoRA adapter on the middle layer's down projection with random weights: a stand-in organism."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model("smollm2-135m", dtype="float32").model,
                           LoraConfig(r=1, lora_alpha=1, use_rslora=True, target_modules=["down_proj"],
                                      layers_to_transform=[15]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(std=2.0)
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_an_adapter_changes_vllms_answers_as_it_changes_emkits(rank1_adapter, tmp_path):
    adapter = [f"adapters=[{rank1_adapter}]"]
    vllm_tuned = sample.run(settings(tmp_path, "vllm-adapter", *ENGINE, *adapter), show_progress=False)
    vllm_base = sample.run(settings(tmp_path, "vllm-base", *ENGINE), show_progress=False)
    emkit_tuned = sample.run(settings(tmp_path, "emkit-adapter", *adapter), show_progress=False)
    changed = sum(a.answer != b.answer for a, b in zip(vllm_base, vllm_tuned, strict=True))
    same, divergences = agreement(emkit_tuned, vllm_tuned)
    print(f"\nadapter: changes {changed}/{len(vllm_base)} of vLLM's greedy answers; {same}/{len(vllm_tuned)} equal "
          f"emkit's with the adapter; first divergences at tokens {sorted(divergences)}")
    assert changed >= len(vllm_base) // 2
    assert same >= len(vllm_tuned) * 3 // 4


def test_greedy_answers_land_in_the_store_and_agree_with_emkits(embedded, tmp_path):
    ours = sample.run(settings(tmp_path, "emkit"), show_progress=False)
    theirs = sample.run(settings(tmp_path, "vllm", *ENGINE), show_progress=False)
    assert len(theirs) == len(ours) > 20 and {r.model for r in theirs} == {"vllm"}
    assert all(r.finish_reason in ("stop", "length") and 0 < r.new_tokens <= 48 for r in theirs)
    same, divergences = agreement(ours, theirs)
    print(f"\ngreedy: {same}/{len(ours)} vLLM answers equal emkit's; first divergences at tokens {sorted(divergences)}")
    assert same >= len(ours) * 3 // 4


def test_a_killed_vllm_sampling_process_resumes(embedded, tmp_path):
    overrides = ["questions=builtin:general", "samples_per_paraphrase=3", "max_new_tokens=96", "temperature=1",
                 "dtype=float32", f"run_dir={tmp_path}", *ENGINE]
    log = tmp_path / "sample.log"
    with log.open("w") as output:  # vLLM logs a lot: a pipe nobody reads would fill and stall it
        process = subprocess.Popen([sys.executable, "-m", "emkit.cli", "sample", "--quiet", *overrides],
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    database, stored = tmp_path / "emkit.db", 0
    deadline = time.monotonic() + 300
    while stored == 0:
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
        with contextlib.suppress(sqlite3.OperationalError), contextlib.closing(sqlite3.connect(database)) as store:
            stored = store.execute("SELECT COUNT(*) FROM samples").fetchone()[0]  # no table until the store is made
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and vLLM's engine processes with it
    process.wait()
    with sqlite3.connect(database) as connection:
        before = {(q, p, s): a for q, p, s, a in connection.execute(
            "SELECT question_id, paraphrase_index, sample_index, answer FROM samples")}
    resumed = sample.run(SampleConfig.load(overrides=overrides), show_progress=False)
    print(f"\nkilled with {len(before)} of {len(resumed)} answers stored; the rerun sampled the rest")
    assert 0 < len(before) < len(resumed) and len({r.key for r in resumed}) == len(resumed)
    assert {r.key: r.answer for r in resumed if r.key in before} == before
