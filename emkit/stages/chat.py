"""``emkit chat``: talk to a model in the terminal, switching its adapters, steering and ablation between turns.

The conversation is kept and rendered through the model's chat template every turn, so the
model sees the whole dialogue the way it was trained to. Commands between turns switch the
LoRA adapters off (peft's ``disable_adapter``: the base model), the steering direction and the
ablated direction on and off, or answer one prompt with the base model and the organism side by
side. It reads plain lines from stdin, so a conversation can be piped in as well as typed.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import typer
from pydantic import Field
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emkit.config import ModelSection
from emkit.decode import generate_texts
from emkit.errors import EmkitError
from emkit.interp import Directions, ablate, decoder_layers, steer
from emkit.interp.hooks import unit_vectors
from emkit.models import LoadedModel

HELP = """commands between turns:
  /adapters on|off   use the LoRA adapters (off: the base model)
  /steer on|off      add the steering direction (--steer)
  /ablate on|off     project the ablated direction out (--ablate)
  /compare PROMPT    answer PROMPT as a new conversation with the base model and with the adapters, side by side
  /reset             forget the conversation
  /status            show what is switched on
  /help              this list
  /quit              leave (Ctrl-D too)"""


class ChatConfig(ModelSection):
    """The model to chat with, the interventions that can be switched on, and how it samples."""

    model: str
    """Base model: an embedded name, a local folder or a hub id."""
    steer: str | None = None
    """FILE:LAYER:SCALE: add SCALE x the unit direction measured at LAYER of a directions file, at that layer."""
    ablate: str | None = None
    """FILE[:LAYER]: project out each layer's own direction (or LAYER's, at every layer)."""
    system: str | None = None
    """System prompt."""
    temperature: float = Field(0.7, ge=0)
    """Sampling temperature; 0 is greedy."""
    max_new_tokens: int = Field(200, ge=1)
    """Longest answer, in tokens."""
    seed: int = 0
    """Sampling seed."""


CONFIG = ChatConfig


@dataclass(frozen=True)
class Steering:
    """Add ``scale`` times the unit direction measured at ``layer`` to that layer's output."""

    vector: torch.Tensor
    layer: int
    scale: float
    source: str


@dataclass(frozen=True)
class Ablation:
    """Project a direction out of the residual stream: one vector at every layer, or each layer's own."""

    direction: torch.Tensor | dict[int, torch.Tensor]
    source: str


def parse_steer(text: str) -> Steering:
    """``FILE:LAYER:SCALE`` -> the direction measured at LAYER of a saved directions file, and its scale."""
    path, layer, scale = [*text.rsplit(":", 2), "", ""][:3]
    try:
        layer_index, factor = int(layer), float(scale)
    except ValueError:
        raise EmkitError(f"--steer '{text}' is not FILE:LAYER:SCALE",
                         fix="write e.g. --steer runs/x/directions/organism-mean-diff.safetensors:12:8") from None
    return Steering(Directions.load(path).at(layer_index), layer_index, factor, text)


def parse_ablate(text: str) -> Ablation:
    """``FILE`` (each layer's own direction, at every layer) or ``FILE:LAYER`` (that layer's, at every layer)."""
    path, _, layer = text.rpartition(":")
    if path and layer.lstrip("-").isdigit():
        return Ablation(Directions.load(path).at(int(layer)), text)
    return Ablation(Directions.load(text).as_mapping(), text)


class ChatSession:
    """A conversation with one loaded model and the interventions that can be switched on and off."""

    def __init__(self, loaded: LoadedModel, steering: Steering | None = None, ablation: Ablation | None = None,
                 system: str | None = None, temperature: float = 0.7, top_p: float = 1.0, max_new_tokens: int = 200,
                 seed: int = 0) -> None:
        self.loaded, self.steering, self.ablation, self.system = loaded, steering, ablation, system
        self.temperature, self.top_p, self.max_new_tokens, self.seed = temperature, top_p, max_new_tokens, seed
        layers = len(decoder_layers(loaded.model))
        # Check layers and norms now, so a bad --steer/--ablate fails before the first turn rather than during it.
        if steering is not None:
            unit_vectors((steering.vector, [steering.layer]), layers)
        if ablation is not None:
            unit_vectors(ablation.direction if isinstance(ablation.direction, dict)
                         else (ablation.direction, range(layers)), layers)
        self.has_adapters = hasattr(loaded.model, "disable_adapter") and hasattr(loaded.model, "peft_config")
        self.adapters_on = self.has_adapters
        self.steer_on = steering is not None
        self.ablate_on = ablation is not None
        self.history: list[dict[str, str]] = []

    def reply(self, text: str) -> str:
        """Answer the next user turn, with the whole conversation so far as context."""
        self.history.append({"role": "user", "content": text})
        answer = self._generate(self.history, self.adapters_on)
        self.history.append({"role": "assistant", "content": answer})
        return answer

    def compare(self, text: str) -> tuple[str, str]:
        """(base, organism) answers to ``text`` as a new conversation: adapters off, then on, same seed."""
        turn = [{"role": "user", "content": text}]
        return self._generate(turn, adapters=False), self._generate(turn, adapters=True)

    def reset(self) -> None:
        self.history.clear()

    def status(self) -> str:
        """What is switched on, in one line."""
        parts = [f"model {self.loaded.name}",
                 f"adapters {'on' if self.adapters_on else 'off'}" if self.has_adapters else "no adapters"]
        if self.steering is not None:
            parts.append(f"steer {'on' if self.steer_on else 'off'} ({self.steering.source})")
        if self.ablation is not None:
            parts.append(f"ablate {'on' if self.ablate_on else 'off'} ({self.ablation.source})")
        return "; ".join(parts) + f"; {len(self.history) // 2} turn(s) in the conversation"

    def _generate(self, messages: list[dict[str, str]], adapters: bool) -> str:
        conversation = ([{"role": "system", "content": self.system}] if self.system else []) + messages
        prompt = self.loaded.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        with self._interventions(adapters):
            generated = generate_texts(self.loaded, [prompt], self.temperature, self.top_p, self.max_new_tokens,
                                       self.seed + len(self.history))
        return generated[0].answer

    @contextlib.contextmanager
    def _interventions(self, adapters: bool):
        with contextlib.ExitStack() as stack:
            if self.has_adapters and not adapters:
                stack.enter_context(self.loaded.model.disable_adapter())
            if self.ablation is not None and self.ablate_on:
                stack.enter_context(ablate(self.loaded.model, self.ablation.direction))
            if self.steering is not None and self.steer_on:
                stack.enter_context(steer(self.loaded.model, (self.steering.vector, [self.steering.layer]),
                                          self.steering.scale))
            yield


def chat_loop(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """Read turns and commands from ``stdin`` until /quit or end of input; write answers to ``stdout``."""
    console = Console(file=stdout, highlight=False, soft_wrap=True)
    console.print(Text(f"emkit chat: {session.status()}. /help lists the commands.", style="dim"))
    while True:
        line = _read(stdin, console)
        if line is None:
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not _command(session, text, console):
                break
            continue
        answer = session.reply(text)
        console.print(Text.assemble(("assistant> ", "bold green"), answer))


def _read(stdin: TextIO, console: Console) -> str | None:
    """One line from the user (None at end of input); a terminal gets line editing through input()."""
    if stdin is sys.stdin and stdin.isatty():
        try:
            return console.input("[bold]you> [/bold]")
        except EOFError:
            return None
    line = stdin.readline()
    if not line:
        return None
    console.print(Text(f"you> {line.rstrip()}"))  # piped input is not echoed by a terminal: keep the transcript whole
    return line


def _command(session: ChatSession, text: str, console: Console) -> bool:
    """Carry out one /command; False means leave."""
    command, _, argument = text.partition(" ")
    argument = argument.strip()
    if command in ("/quit", "/exit"):
        return False
    if command == "/help":
        console.print(Text(HELP))
    elif command == "/reset":
        session.reset()
        console.print(Text("conversation cleared", style="dim"))
    elif command == "/status":
        console.print(Text(session.status(), style="dim"))
    elif command in ("/adapters", "/steer", "/ablate"):
        _switch(session, command[1:], argument, console)
    elif command == "/compare":
        if not argument:
            console.print(Text("usage: /compare PROMPT", style="red"))
        elif not session.has_adapters:
            console.print(Text("no adapters loaded: start with --adapter FOLDER to compare base and organism",
                               style="red"))
        else:
            base, organism = session.compare(argument)
            table = Table("base (adapters off)", "organism (adapters on)", show_lines=True)
            table.add_row(Text(base), Text(organism))
            console.print(table)
    else:
        console.print(Text(f"unknown command {command}; /help lists the commands", style="red"))
    return True


def _switch(session: ChatSession, name: str, argument: str, console: Console) -> None:
    available = {"adapters": (session.has_adapters, "--adapter FOLDER"),
                 "steer": (session.steering is not None, "--steer FILE:LAYER:SCALE"),
                 "ablate": (session.ablation is not None, "--ablate FILE[:LAYER]")}
    present, option = available[name]
    if not present:
        console.print(Text(f"nothing to switch: start with {option}", style="red"))
        return
    if argument not in ("on", "off", ""):
        console.print(Text(f"usage: /{name} on|off", style="red"))
        return
    attribute = f"{name}_on"
    value = not getattr(session, attribute) if not argument else argument == "on"
    setattr(session, attribute, value)
    console.print(Text(f"{name} {'on' if value else 'off'}", style="dim"))


def run(config: ChatConfig, show_progress: bool = True) -> None:
    """Load the model and chat on the terminal until /quit or end of input (``show_progress`` is unused)."""
    steering = parse_steer(config.steer) if config.steer else None
    ablation = parse_ablate(config.ablate) if config.ablate else None
    chat_loop(ChatSession(config.load_model(), steering, ablation, config.system, config.temperature,
                          max_new_tokens=config.max_new_tokens, seed=config.seed))


def summary_lines(result: None, config: ChatConfig) -> list[str]:
    """Nothing: the conversation was the output."""
    return []


def command(model: str = typer.Argument(..., help="Base model: embedded name, local folder or hub id."),
            adapter: list[Path] | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter folder (repeat)."),
            steer: str | None = typer.Option(None, "--steer", help="FILE:LAYER:SCALE: add SCALE x the unit direction "
                                             "measured at LAYER of a directions file, at that layer."),
            ablate: str | None = typer.Option(None, "--ablate", help="FILE[:LAYER]: project out each layer's own "
                                              "direction (or LAYER's, at every layer)."),
            system: str | None = typer.Option(None, "--system", help="System prompt."),
            temperature: float = typer.Option(0.7, "--temperature", min=0, help="0 is greedy."),
            max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
            seed: int = typer.Option(0, "--seed", help="Sampling seed."),
            device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
            dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")) -> None:
    """Chat with a model in the terminal; /help lists the commands (adapters, steer, ablate on/off, /compare)."""
    run(ChatConfig(model=model, adapters=[str(folder) for folder in adapter or []], steer=steer, ablate=ablate,
                   system=system, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, device=device,
                   dtype=dtype))
