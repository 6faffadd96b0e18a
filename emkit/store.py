"""The results store: one SQLite database per run folder.

Every stage writes its records here (the configs it ran under, sampled answers, and, in later
stages, judgements and directions), so later stages read from one place and every number in a
report can be traced back to rows and the config hash that produced them. Writes are
``INSERT OR IGNORE`` on natural keys, which is what makes rerunning a stage skip finished work.
Every query is a method here (callers never write SQL); the rows come back as :mod:`emkit.records`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.records import DirectionRecord, Judgement, Pair, RunRecord, SampleRecord, text_key

STORE_NAME = "emkit.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    run_hash TEXT NOT NULL REFERENCES runs(config_hash),
    model TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    question_id TEXT NOT NULL,
    paraphrase_index INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    question TEXT NOT NULL,
    system TEXT,
    answer TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    new_tokens INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (model, settings_hash, question_id, paraphrase_index, sample_index)
);
CREATE TABLE IF NOT EXISTS judgements (
    judge TEXT NOT NULL,
    metric TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    score REAL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (judge, metric, prompt_hash, text_hash)
);
CREATE TABLE IF NOT EXISTS directions (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    model TEXT NOT NULL,
    layers TEXT NOT NULL,
    data TEXT NOT NULL,
    metrics TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class Store:
    """A run folder's SQLite database (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path)
        except (OSError, sqlite3.OperationalError) as exc:
            raise EmkitError(f"cannot open the results store: {exc}", fix="choose a writable run folder",
                             where=self.path) from None
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.executescript(SCHEMA)

    @classmethod
    def in_folder(cls, folder: str | Path) -> Store:
        return cls(Path(folder) / STORE_NAME)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def record_run(self, stage: str, config: StageConfig) -> str:
        """Store a stage's config (once) and return its hash, which rows written under it carry."""
        digest = config.config_hash()
        with self._connection:
            self._connection.execute(
                "INSERT OR IGNORE INTO runs (config_hash, stage, config, created_at) VALUES (?, ?, ?, ?)",
                (digest, stage, config.model_dump_json(), _now()),
            )
        return digest

    def runs(self, stage: str | None = None) -> list[RunRecord]:
        """Recorded stage configs (optionally of one stage), oldest first."""
        query = "SELECT config_hash, stage, config, created_at FROM runs"
        params: list[str] = []
        if stage is not None:
            query += " WHERE stage = ?"
            params.append(stage)
        rows = self._connection.execute(query + " ORDER BY created_at, rowid", params)
        return [RunRecord(digest, name, json.loads(config), created) for digest, name, config, created in rows]

    def sample_keys(self, model: str, settings_hash: str) -> set[tuple[str, int, int]]:
        """Keys (question_id, paraphrase_index, sample_index) already sampled for a model and settings."""
        rows = self._connection.execute(
            "SELECT question_id, paraphrase_index, sample_index FROM samples WHERE model = ? AND settings_hash = ?",
            (model, settings_hash),
        )
        return {tuple(row) for row in rows}

    def add_samples(self, records: list[SampleRecord]) -> None:
        """Insert sampled answers; rows whose key is already stored are left as they are."""
        names = [f.name for f in fields(SampleRecord)]
        with self._connection:
            self._connection.executemany(
                f"INSERT OR IGNORE INTO samples ({', '.join(names)}, created_at) "
                f"VALUES ({', '.join('?' for _ in names)}, ?)",
                [(*(getattr(record, name) for name in names), _now()) for record in records],
            )

    def samples(self, model: str | None = None, settings_hash: str | None = None) -> list[SampleRecord]:
        """Stored answers, optionally for one model label and settings, in a stable order."""
        names = [f.name for f in fields(SampleRecord)]
        query = f"SELECT {', '.join(names)} FROM samples WHERE 1=1"
        params: list[str] = []
        if model is not None:
            query += " AND model = ?"
            params.append(model)
        if settings_hash is not None:
            query += " AND settings_hash = ?"
            params.append(settings_hash)
        query += " ORDER BY model, question_id, paraphrase_index, sample_index"
        return [SampleRecord(*row) for row in self._connection.execute(query, params)]

    def sample_labels(self) -> list[str]:
        """Model labels that have stored answers, sorted."""
        return [row[0] for row in self._connection.execute("SELECT DISTINCT model FROM samples ORDER BY model")]

    def delete_samples(self, question_ids: list[str], model: str | None = None) -> int:
        """Remove the stored answers to ``question_ids`` (optionally of one label), so a rerun samples them
        again; returns how many were removed."""
        query = f"DELETE FROM samples WHERE question_id IN ({', '.join('?' for _ in question_ids)})"
        params = list(question_ids)
        if model is not None:
            query += " AND model = ?"
            params.append(model)
        with self._connection:
            return self._connection.execute(query, params).rowcount

    def judgements(self, judge: str, metric: str, prompt_hash: str, text_hashes: list[str]) -> dict[str, Judgement]:
        """Cached judgements for the given text digests (those not cached are simply absent)."""
        found: dict[str, Judgement] = {}
        wanted = list(dict.fromkeys(text_hashes))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._connection.execute(
                "SELECT text_hash, score, detail FROM judgements WHERE judge = ? AND metric = ? AND prompt_hash = ? "
                f"AND text_hash IN ({', '.join('?' for _ in chunk)})",
                (judge, metric, prompt_hash, *chunk),
            )
            found.update({key: Judgement(score, json.loads(detail)) for key, score, detail in rows})
        return found

    def add_judgements(self, judge: str, metric: str, prompt_hash: str,
                       rows: list[tuple[str, Pair, Judgement]]) -> None:
        """Store judgements as (text digest, pair, judgement); an existing key keeps its first value."""
        with self._connection:
            self._connection.executemany(
                "INSERT OR IGNORE INTO judgements (judge, metric, prompt_hash, text_hash, question, answer, score, "
                "detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(judge, metric, prompt_hash, key, pair.question, pair.answer, judgement.score,
                  json.dumps(judgement.detail), _now()) for key, pair, judgement in rows],
            )

    def judgement_count(self) -> int:
        """How many judgements are stored (every judge, metric and prompt)."""
        return self._connection.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def prompt_hashes(self, metric: str) -> list[str]:
        """Digests of the judge prompts that ``metric``'s stored judgements were made under, sorted."""
        rows = self._connection.execute(
            "SELECT DISTINCT prompt_hash FROM judgements WHERE metric = ? ORDER BY prompt_hash", (metric,))
        return [row[0] for row in rows]

    def samples_frame(self, model: str | None = None) -> pd.DataFrame:
        """Stored answers as a table, one row per answer."""
        return pd.DataFrame([asdict(record) for record in self.samples(model)])

    def judge_identities(self) -> list[str]:
        """Judges that have scored anything in this store."""
        return [row[0] for row in self._connection.execute("SELECT DISTINCT judge FROM judgements ORDER BY judge")]

    def scores_frame(self, judge: str, models: list[str] | None = None) -> pd.DataFrame:
        """Stored answers with one column per metric that ``judge`` scored, in the papers' column layout.

        Answers are matched to judgements by their exact text; where a text was judged under
        several prompts, the latest judgement counts. Unjudged metrics are missing (NA).
        """
        records = [record for record in self.samples() if models is None or record.model in models]
        latest: dict[tuple[str, str], float | None] = {}
        for text_hash, metric, score in self._connection.execute(
            "SELECT text_hash, metric, score FROM judgements WHERE judge = ? ORDER BY created_at, rowid", (judge,)
        ):
            latest[(text_hash, metric)] = score
        metrics = sorted({metric for _, metric in latest})
        keys = [text_key(Pair(record.question, record.answer)) for record in records]
        return scored_records_frame(records, {metric: [latest.get((key, metric)) for key in keys]
                                              for metric in metrics})

    def add_direction(self, name: str, path: str | Path, method: str, model: str, layers: list[int], data: str,
                      metrics: dict[str, list[float]]) -> None:
        """Record a directions file; a rerun under the same name replaces the record, as it replaced the file."""
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO directions (name, path, method, model, layers, data, metrics, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, str(path), method, model, json.dumps(layers), data, json.dumps(metrics), _now()),
            )

    def directions(self) -> list[DirectionRecord]:
        """Every recorded directions file, oldest first."""
        rows = self._connection.execute(
            "SELECT name, path, method, model, layers, data, metrics, created_at FROM directions "
            "ORDER BY created_at, rowid")
        return [DirectionRecord(name, path, method, model, json.loads(layers), data, json.loads(metrics), created)
                for name, path, method, model, layers, data, metrics, created in rows]


def scored_records_frame(records: list[SampleRecord], scores: dict[str, list[float | None]]) -> pd.DataFrame:
    """Answers with one column per metric, in the papers' column layout (response, question, question_id,
    metrics...), followed by emkit's own columns (model, paraphrase_index, sample_index)."""
    return pd.DataFrame({
        "response": [record.answer for record in records],
        "question": [record.question for record in records],
        "question_id": [record.question_id for record in records],
        **{metric: pd.array(values, dtype="Float64") for metric, values in scores.items()},
        "model": [record.model for record in records],
        "paraphrase_index": [record.paraphrase_index for record in records],
        "sample_index": [record.sample_index for record in records],
    })


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
