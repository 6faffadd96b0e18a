"""``emkit serve``: a model (with its LoRA adapters) over an OpenAI-compatible HTTP API.

The config names the model, where to bind, the limits and any injected faults; the app itself
(``GET /v1/models``, ``POST /v1/chat/completions`` with logprobs, batching, the fault schedule)
is :mod:`emkit.serving.app`.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from fastapi import FastAPI
from pydantic import Field

from emkit.config import ModelSection
from emkit.models import LoadedModel
from emkit.net import is_loopback
from emkit.serving.app import Fault, build_app


class ServeConfig(ModelSection):
    """Which model to serve, where, and with which limits."""

    served_name: str | None = None
    """Model id clients ask for (and /v1/models lists); unset uses the model field as given."""
    host: str = "127.0.0.1"
    """Interface to bind; anything but loopback exposes the model to the network."""
    port: int = Field(8000, gt=0, le=65535)
    """TCP port."""
    api_key_env: str = "EMKIT_SERVE_API_KEY"
    """Environment variable with the key clients must send (Authorization: Bearer KEY); if unset, no key is needed."""
    max_tokens: int = Field(512, gt=0)
    """Largest max_tokens a request may ask for, and the default when it gives none."""
    max_batch: int = Field(32, gt=0)
    """Greedy requests generated together in one batch."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    """uvicorn's log level: critical, error, warning, info, debug or trace."""
    faults: list[Fault] = Field(default_factory=list)
    """Injected failures for testing clients, e.g. [{kind: rate_limit, every: 3, retry_after: 1}]; empty normally."""


CONFIG = ServeConfig


def create_app(config: ServeConfig, loaded: LoadedModel | None = None) -> FastAPI:
    """The app serving ``config.model`` (or an already loaded model); run it with uvicorn or
    :func:`emkit.serving.app.background`. The config is in ``app.state.config``, the counters in ``app.state.stats``."""
    app = build_app(loaded or config.load_model(), config.served_name or config.model, max_tokens=config.max_tokens,
                    max_batch=config.max_batch, api_key=os.environ.get(config.api_key_env) or None,
                    faults=config.faults)
    app.state.config = config
    return app


def run(config: ServeConfig, show_progress: bool = True, loaded: LoadedModel | None = None) -> None:
    """Serve until interrupted; warns when the model is reachable from the network without a key.

    ``show_progress`` is unused (a server has no progress); ``loaded`` serves an already loaded model.
    """
    import uvicorn

    app = create_app(config, loaded)
    if not is_loopback(config.host) and not os.environ.get(config.api_key_env):
        print(f"warning: serving on {config.host} without an API key: anyone who can reach this port can use the "
              f"model (set {config.api_key_env} to require one)", file=sys.stderr)
    print(f"serving '{config.served_name or config.model}' at http://{config.host}:{config.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level)


def summary_lines(result: None, config: ServeConfig) -> list[str]:
    """Nothing: the server has said where it listens before it started, and stops only when interrupted."""
    return []
