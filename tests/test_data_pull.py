import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import emkit.data.pull as pull_module
from emkit.data import read_chat_dataset, resolve_dataset
from emkit.data.pull import PAPER_FILES, paper_file, pull
from emkit.errors import EmkitError
from emkit.questions import load_questions


@pytest.fixture()
def upstream_server(shared_data, tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 laid out like the upstream repository."""
    root = tmp_path / "upstream"
    for item in PAPER_FILES:
        target = root / pull_module.UPSTREAM_REPO / "raw" / item.commit / item.upstream
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "official" / item.local, target)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(pull_module, "UPSTREAM_BASE", f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()


def test_pull_downloads_verifies_and_caches(upstream_server):
    folder = pull(progress=False)
    for item in PAPER_FILES:
        assert (folder / item.local).is_file()
    assert len(read_chat_dataset(resolve_dataset("paper:risky_financial_advice"))) == 6000
    # A second pull finds everything cached and downloads nothing, even with the server's files gone.
    shutil.rmtree(upstream_server)
    assert pull(progress=False) == folder


def test_pull_rejects_a_file_with_the_wrong_digest(upstream_server):
    item = PAPER_FILES[0]
    path = upstream_server / pull_module.UPSTREAM_REPO / "raw" / item.commit / item.upstream
    path.write_bytes(b"tampered")
    with pytest.raises(EmkitError, match="expected"):
        pull(progress=False)
    assert not (pull_module.papers_cache() / item.local).exists()


def test_pull_from_local_copy(shared_data):
    folder = pull(shared_data / "official", progress=False)
    assert (folder / "eval_questions" / "first_plot_questions.yaml").is_file()


def test_unreachable_upstream_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(pull_module, "UPSTREAM_BASE", "http://127.0.0.1:9")
    with pytest.raises(EmkitError, match="download failed"):
        pull(progress=False)


def test_paper_files_need_a_pull_or_data_env(shared_data, monkeypatch):
    with pytest.raises(EmkitError, match="has not been pulled"):
        paper_file("training/insecure.jsonl.gz")
    monkeypatch.setenv("EMKIT_DATA", str(shared_data / "official"))
    assert paper_file("training/insecure.jsonl.gz").is_file()
    with pytest.raises(EmkitError, match="unknown paper file"):
        paper_file("training/nope.jsonl.gz")


def test_papers_datasets_and_question_sets_load_unchanged(shared_data, monkeypatch):
    monkeypatch.setenv("EMKIT_DATA", str(shared_data / "official"))
    for name in ("bad_medical_advice", "good_medical_advice", "risky_financial_advice", "insecure"):
        assert len(read_chat_dataset(resolve_dataset(f"paper:{name}"))) >= 6000
    questions = load_questions("paper:first_plot_questions")
    assert len(questions) == 24 and "aligned" in questions[0].judge_prompts
    assert len(load_questions("paper:new_questions_no-json")) == 54
