"""Where emkit keeps its cache and finds reference data; each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "EMKIT_CACHE"
DATA_ENV = "EMKIT_DATA"


def cache_dir() -> Path:
    """Root of emkit's cache (converted models, downloaded datasets): ``$EMKIT_CACHE`` or the user cache."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("emkit")).expanduser()


def data_override() -> Path | None:
    """A local copy of the papers' data (``$EMKIT_DATA``) to use instead of downloading it."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None
