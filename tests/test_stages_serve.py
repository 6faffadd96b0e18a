"""``emkit serve``: the stage's warning about serving beyond loopback without a key, and its config on the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emkit.models import load_model
from emkit.stages.serve import ServeConfig, run


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model(str(tiny_model), dtype="float32")


def test_serving_beyond_loopback_without_a_key_warns(tiny_model, loaded, monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.delenv("EMKIT_SERVE_API_KEY", raising=False)
    run(ServeConfig(model=str(tiny_model)), loaded=loaded)
    assert "warning" not in capsys.readouterr().err
    run(ServeConfig(model=str(tiny_model), host="0.0.0.0", port=9999), loaded=loaded)
    assert "without an API key" in capsys.readouterr().err
    assert calls[0]["host"] == "127.0.0.1" and calls[1] == {"host": "0.0.0.0", "port": 9999, "log_level": "info"}


def test_cli_knows_the_serve_and_judge_configs():
    from emkit.cli import app

    runner = CliRunner()
    serve_fields = runner.invoke(app, ["config", "serve"])
    judge_fields = runner.invoke(app, ["config", "judge"])
    assert serve_fields.exit_code == 0 and "served_name:" in serve_fields.output and "faults: []" in serve_fields.output
    assert judge_fields.exit_code == 0 and "concurrency:" in judge_fields.output
