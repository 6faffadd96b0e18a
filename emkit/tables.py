"""Reading and writing result tables (CSV, parquet, JSONL), chosen by the file's suffix."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from emkit.errors import EmkitError

SUFFIXES = (".csv", ".parquet", ".jsonl", ".json")


def read_table(path: str | Path) -> pd.DataFrame:
    """A table from a .csv, .parquet or .jsonl file; one clear error when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise EmkitError("table not found", fix="check the path", where=path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl")
        if path.suffix == ".csv":
            return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise EmkitError(f"cannot read table: {str(exc).splitlines()[0]}",
                         fix="check that the file is valid for its suffix", where=path) from None
    raise EmkitError(f"unsupported table format '{path.suffix}'", fix=f"use one of {', '.join(SUFFIXES)}",
                     where=path)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to a .csv, .parquet or .jsonl file (folders created); return the path."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise EmkitError(f"unsupported table format '{path.suffix}'", fix=f"use one of {', '.join(SUFFIXES)}",
                         where=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)  # quotes text with a bare \r too
        else:
            frame.to_json(path, orient="records", lines=path.suffix == ".jsonl", force_ascii=False)
    except OSError as exc:
        raise EmkitError(f"cannot write table ({exc.strerror})", fix="choose a writable output path",
                         where=path) from None
    return path
