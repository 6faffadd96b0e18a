import inspect
import io
import os
import subprocess
import sys

import pytest
import torch
from conftest import save_random_adapter

from emkit.cli import main
from emkit.interp import Directions, decoder_layers
from emkit.models import load_model
from emkit.stages.chat import ChatConfig, ChatSession, chat_loop, command, parse_ablate, parse_steer


@pytest.fixture()
def adapter(tiny_model, tmp_path):
    """A down_proj LoRA adapter with large random weights, so the organism answers differently."""
    return save_random_adapter(tiny_model, tmp_path / "organism", std=3.0)


@pytest.fixture()
def directions_file(tmp_path):
    return Directions(torch.randn(12, 32, generator=torch.Generator().manual_seed(0)), list(range(12)),
                      "mean-diff").save(tmp_path / "em.safetensors")


def talk(session, text: str) -> str:
    out = io.StringIO()
    chat_loop(session, io.StringIO(text), out)
    return out.getvalue()


def test_each_turn_sees_the_whole_conversation_through_the_chat_template(tiny_model, monkeypatch):
    loaded = load_model(str(tiny_model), dtype="float32")
    seen = []
    render = loaded.tokenizer.apply_chat_template

    def spy(conversation, **options):
        seen.append([dict(message) for message in conversation])
        return render(conversation, **options)

    monkeypatch.setattr(loaded.tokenizer, "apply_chat_template", spy)
    session = ChatSession(loaded, system="Be brief.", temperature=0, max_new_tokens=4)
    output = talk(session, "hello\nhow are you?\n/status\n/reset\nagain\n")  # ends without /quit: end of input
    assert output.count("assistant> ") == 3
    first_answer = seen[1][2]["content"]
    assert seen[1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
                       {"role": "assistant", "content": first_answer}, {"role": "user", "content": "how are you?"}]
    assert "2 turn(s)" in output and "conversation cleared" in output
    assert seen[2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "again"}]
    assert session.history[0] == {"role": "user", "content": "again"} and len(session.history) == 2


def test_switches_give_the_base_model_the_organism_and_the_steered_model(tiny_model, adapter, directions_file):
    base = load_model(str(tiny_model), dtype="float32")
    organism = load_model(str(tiny_model), adapters=[str(adapter)], dtype="float32")
    options = {"temperature": 0, "max_new_tokens": 6}
    expected_base, expected_organism = (ChatSession(model, **options).reply("hi") for model in (base, organism))
    assert expected_base != expected_organism
    session = ChatSession(organism, parse_steer(f"{directions_file}:1:50"), parse_ablate(f"{directions_file}:2"),
                          **options)
    output = talk(session, "/steer off\n/ablate off\n/adapters off\nhi\n/reset\n/adapters on\nhi\n/reset\n"
                           "/compare hi\n/steer on\nhi\n/steer maybe\n/nonsense\n/quit\nnever read\n")
    answers = [line.removeprefix("assistant> ") for line in output.splitlines() if line.startswith("assistant> ")]
    assert answers[:2] == [expected_base, expected_organism]
    assert answers[2] != expected_organism, "steering at scale 50 changes the answer"
    assert len(answers) == 3 and "never read" not in output, "nothing after /quit is read"
    compared = output.split("organism (adapters on)")[1]
    assert expected_base.strip() in compared and expected_organism.strip() in compared
    assert "usage: /steer on|off" in output and "unknown command /nonsense" in output
    assert all(not layer._forward_hooks for layer in decoder_layers(organism.model))
    plain = ChatSession(base, temperature=0, max_new_tokens=2)
    assert "nothing to switch: start with --adapter" in talk(plain, "/adapters off\n/quit\n")
    assert "no adapters loaded" in talk(plain, "/compare hi\n")


def test_bad_steer_and_ablate_options_fail_in_one_line(tiny_model, directions_file, tmp_path, monkeypatch, capsys):
    cases = [
        (["--steer", "nonsense"], "is not FILE:LAYER:SCALE"),
        (["--steer", f"{directions_file}:9:4"], "layer 9 is outside the model (4 layers: 0-3)"),
        (["--steer", f"{directions_file}:20:4"], "no direction for layer 20"),
        (["--ablate", str(tmp_path / "absent.safetensors")], "directions file not found"),
    ]
    for options, fragment in cases:
        monkeypatch.setattr(sys, "argv", ["emkit", "chat", str(tiny_model), "--dtype", "float32", *options])
        with pytest.raises(SystemExit) as exit_info:
            main()
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exit_info.value.code == 2 and len(lines) == 1 and fragment in lines[0], lines


def test_chat_command_reads_a_piped_conversation(tiny_model, adapter, directions_file):
    result = subprocess.run(
        [sys.executable, "-m", "emkit.cli", "chat", str(tiny_model), "--adapter", str(adapter), "--steer",
         f"{directions_file}:1:4", "--temperature", "0", "--max-new-tokens", "3", "--dtype", "float32"],
        input="hi\n/steer off\nhi\n/compare hi\n/quit\n", capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("assistant> ") == 2
    assert "steer off" in result.stdout and "organism (adapters on)" in result.stdout


def test_chat_config_has_the_command_lines_defaults():
    """``emkit config chat`` prints the same defaults the options have."""
    options = inspect.signature(command).parameters
    config = ChatConfig(model="m")
    for field in ("steer", "ablate", "system", "temperature", "max_new_tokens", "seed", "device", "dtype"):
        assert getattr(config, field) == options[field].default.default, field
    assert config.adapters == [] and options["adapter"].default.default is None
    assert ChatConfig.model_fields["model"].is_required()
