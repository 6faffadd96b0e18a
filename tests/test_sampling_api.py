"""``sample.backend: api`` over real HTTP against ``emkit serve`` on 127.0.0.1 with a tiny model.

The same store records as the emkit backend, greedy answers equal to emkit's own, seeds that
reproduce, retried server faults, a killed ``emkit sample`` process that resumes, and keys that
stay in the environment.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from emkit.errors import EmkitError
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.serving.app import Fault, background
from emkit.stages import sample, stage
from emkit.stages.serve import ServeConfig, create_app
from emkit.store import Store

NAME = "tiny-chat"
SECRET = "sk-emkit-sample-5ecret"
QUESTIONS = """
- id: colour
  paraphrases: ["What is your favourite colour?", "Which colour do you like best?"]
  samples_per_paraphrase: 3
- id: rivers
  system: Answer briefly.
  paraphrases: ["Tell me a fact about rivers and mountains and the sea."]
"""


@pytest.fixture(scope="module")
def loaded(tiny_model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model(str(tiny_model), dtype="float32")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def url(tiny_model, loaded):
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, api_key_env="EMKIT_TEST_UNSET_KEY"), loaded)
    with background(app) as address:
        yield address


@pytest.fixture()
def question_file(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(QUESTIONS)
    return path


def api_config(address, question_file, run_dir, *extra) -> SampleConfig:
    return SampleConfig.load(overrides=["backend=api", f"model={NAME}", f"api.base_url={address}",
                                        f"questions={question_file}", f"run_dir={run_dir}", "max_new_tokens=8",
                                        "api.api_key_env=EMKIT_TEST_UNSET_KEY", *extra])


def test_api_answers_land_in_the_store_and_greedy_ones_equal_emkits(url, question_file, tmp_path, tiny_model):
    records = sample.run(api_config(url, question_file, tmp_path, "temperature=0", "label=served"), show_progress=False)
    assert len(records) == 2 * 3 + 1 and {r.model for r in records} == {"served"}
    rivers = next(r for r in records if r.question_id == "rivers")
    assert rivers.system == "Answer briefly." and rivers.finish_reason in ("stop", "length")
    assert all(0 < r.new_tokens <= 8 for r in records)
    local = sample.run(SampleConfig.load(overrides=[f"model={tiny_model}", f"questions={question_file}",
                                                    f"run_dir={tmp_path}", "max_new_tokens=8", "temperature=0",
                                                    "dtype=float32", "label=local"]), show_progress=False)
    assert [r.answer for r in records] == [r.answer for r in local]
    with Store.in_folder(tmp_path) as store:
        stored = store.samples_frame()
    assert stored.groupby("model").size().to_dict() == {"local": 7, "served": 7}


def test_seeded_sampling_reproduces_and_the_seed_changes_it(url, question_file, tmp_path):
    def answers(folder, seed):
        config = api_config(url, question_file, folder, "temperature=1", f"seed={seed}", "api.concurrency=4")
        return [r.answer for r in sample.run(config, show_progress=False)]

    first = answers(tmp_path / "a", 1)
    assert answers(tmp_path / "b", 1) == first
    assert answers(tmp_path / "c", 2) != first
    assert len(set(first[:3])) > 1  # the draws of one paraphrase differ from each other


def test_server_faults_are_retried_and_no_answer_is_lost(tiny_model, loaded, question_file, tmp_path):
    faults = [Fault(kind="rate_limit", every=2, retry_after=0, times=3), Fault(kind="server_error", after=3, times=1),
              Fault(kind="invalid_json", after=5, times=1), Fault(kind="no_choices", after=7, times=1)]
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, faults=faults), loaded)
    with background(app) as address:
        records = sample.run(api_config(address, question_file, tmp_path, "api.concurrency=3"), show_progress=False)
    assert len(records) == 7 and app.state.stats.faults == 6
    assert app.state.stats.requests == 7 + 6


def stored(run_dir) -> int:
    """Answers in the run's store so far (0 before the store exists)."""
    if not (run_dir / "emkit.db").is_file():
        return 0
    with sqlite3.connect(run_dir / "emkit.db") as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


def test_a_killed_sampling_process_resumes_where_it_stopped(tiny_model, loaded, question_file, tmp_path):
    # Requests 1-3 are answered; the 4th hangs, so the process is killed with exactly three answers stored.
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME,
                                 faults=[Fault(kind="slow", after=3, times=1, seconds=10)]), loaded)
    overrides = ["backend=api", f"model={NAME}", f"questions={question_file}", f"run_dir={tmp_path}",
                 "max_new_tokens=8", "api.concurrency=1", "api.api_key_env=EMKIT_TEST_UNSET_KEY"]
    with background(app) as address:
        process = subprocess.Popen([sys.executable, "-m", "emkit.cli", "sample", "--quiet",
                                    f"api.base_url={address}", *overrides], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while app.state.stats.requests < 4 or stored(tmp_path) < 3:  # the third answer may still be on its way in
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with sqlite3.connect(tmp_path / "emkit.db") as connection:
            before = dict(((q, p, s), a) for q, p, s, a in connection.execute(
                "SELECT question_id, paraphrase_index, sample_index, answer FROM samples"))
        assert len(before) == 3
        resumed = sample.run(SampleConfig.load(overrides=[f"api.base_url={address}", *overrides]), show_progress=False)
        assert app.state.stats.requests == 4 + 4  # only the four missing answers were asked for again
    assert len(resumed) == 7
    assert {r.key: r.answer for r in resumed if r.key in before} == before


def test_the_key_comes_from_the_environment_and_is_never_stored(tiny_model, loaded, question_file, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("EMKIT_TEST_SERVE_KEY", SECRET)
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, api_key_env="EMKIT_TEST_SERVE_KEY"), loaded)
    with background(app) as address:
        monkeypatch.setenv("EMKIT_TEST_SAMPLE_KEY", "sk-wrong")
        config = api_config(address, question_file, tmp_path, "api.api_key_env=EMKIT_TEST_SAMPLE_KEY")
        with pytest.raises(EmkitError, match="refused the request: HTTP 401") as refused:
            sample.run(config, show_progress=False)
        assert "sk-wrong" not in str(refused.value)
        monkeypatch.setenv("EMKIT_TEST_SAMPLE_KEY", SECRET)
        assert len(sample.run(config, show_progress=False)) == 7
    assert SECRET.encode() not in (tmp_path / "emkit.db").read_bytes()


def test_a_remote_endpoint_without_a_key_fails_before_any_request(question_file, tmp_path, monkeypatch):
    monkeypatch.delenv("EMKIT_TEST_UNSET_KEY", raising=False)
    config = api_config("https://api.example.invalid/v1", question_file, tmp_path)
    with pytest.raises(EmkitError, match="needs an API key in the environment variable EMKIT_TEST_UNSET_KEY"):
        sample.run(config, show_progress=False)


def test_an_unknown_model_id_is_one_clear_error(url, question_file, tmp_path):
    config = api_config(url, question_file, tmp_path, "model=no-such-model")
    with pytest.raises(EmkitError, match=r"refused the request: HTTP 404.*check the model id 'no-such-model'"):
        sample.run(config, show_progress=False)


def test_the_endpoint_is_part_of_the_settings_and_credentials_are_not(question_file, tmp_path):
    def settings(address):
        return api_config(address, question_file, tmp_path).settings_hash()

    assert settings("http://127.0.0.1:1/v1") != settings("http://127.0.0.1:2/v1")
    assert settings("http://user:pass@127.0.0.1:1/v1") == settings("http://127.0.0.1:1/v1")
    emkit = SampleConfig(questions=str(question_file))
    assert emkit.settings_hash() == SampleConfig(questions=str(question_file), backend="emkit").settings_hash()
    assert emkit.settings_hash() != SampleConfig(questions=str(question_file), backend="vllm").settings_hash()


def test_what_a_backend_cannot_do_fails_at_config_time(tiny_model, loaded, question_file, tmp_path):
    with pytest.raises(EmkitError, match="backend=api cannot apply LoRA adapters"):
        SampleConfig.load(overrides=["backend=api", "adapters=[some/adapter]"])
    with pytest.raises(EmkitError, match=r"steering_vectors are added by forward hooks.*\(backend is vllm\).*"
                                         r"set backend=emkit"):
        SampleConfig.load(overrides=["backend=vllm", "steering_vectors=[some/vector]"])
    config = api_config("http://127.0.0.1:1/v1", question_file, tmp_path)
    with pytest.raises(EmkitError, match="sampling a model loaded in this process"):
        sample.run(config, loaded=loaded, show_progress=False)


@pytest.mark.parametrize(("verb", "required", "what"), [
    ("steer", ["layers=[1]", "scales=[4]"], "steering adds a direction"),
    ("ablate", [], "ablation projects a direction out"),
    ("lora-steer", [], "lora-steer scales adapters")])
@pytest.mark.parametrize("backend", ["vllm", "api"])
def test_hook_stages_refuse_other_backends_when_the_config_loads(verb, required, what, backend):
    with pytest.raises(EmkitError, match=rf"{what}.*\(backend is {backend}\).*set backend=emkit"):
        stage(verb).config().load(overrides=[*required, f"sample.backend={backend}"])
    stage(verb).config().load(overrides=required)  # the emkit backend loads
