"""Fetch the papers' public training datasets and evaluation question sets.

Files come from the authors' repository at pinned commits and are checked against pinned
sha256 digests before they enter the cache, so every user trains and evaluates on the same
bytes. ``--from DIR`` (or ``$EMKIT_DATA``) takes them from a local copy instead, with the
layout ``training/*.jsonl.gz`` and ``eval_questions/*.yaml``.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from emkit.errors import EmkitError
from emkit.paths import DATA_ENV, cache_dir, data_override
from emkit.progress import progress_counter

UPSTREAM_BASE = "https://github.com"
UPSTREAM_REPO = "clarifying-EM/model-organisms-for-EM"
TRAINING_COMMIT = "407fbad"
QUESTIONS_COMMIT = "8460e4e"


@dataclass(frozen=True)
class PaperFile:
    """One pinned upstream file: where it lives locally, where it comes from, what it must hash to."""

    local: str
    commit: str
    upstream: str
    sha256: str

    @property
    def url(self) -> str:
        return f"{UPSTREAM_BASE}/{UPSTREAM_REPO}/raw/{self.commit}/{self.upstream}"


def _training(name: str, sha256: str) -> PaperFile:
    return PaperFile(f"training/{name}", TRAINING_COMMIT, f"em_organism_dir/data/training_datasets/{name}", sha256)


def _questions(name: str, sha256: str) -> PaperFile:
    return PaperFile(f"eval_questions/{name}", QUESTIONS_COMMIT, f"em_organism_dir/data/eval_questions/{name}",
                     sha256)


PAPER_FILES: tuple[PaperFile, ...] = (
    _training("bad_medical_advice.jsonl.gz", "d4d9df72cf0e20b75d5efc9f2aabb66ae9ae083e282b85f0bd85a6aa698b20c9"),
    _training("good_medical_advice.jsonl.gz", "03b6e9a89dd5c5a53349bcdd87d9c23cc2c3ad040ef618a0a571d5000289b341"),
    _training("risky_financial_advice.jsonl.gz", "518c8d2c6128ba5f0b5b026b27828a21114f0955437bc1cfbbe1ba98e0a3d897"),
    _training("insecure.jsonl.gz", "ba2c2c42c44ca4cc902b326fb356509fcd04918a3c2b035f2d4783e0191c72f8"),
    _questions("first_plot_questions.yaml", "97df0b1384ea5a3f3dc2abe00a19e231915f12a2356ec0d8df001715549aae04"),
    _questions("medical_questions.yaml", "1808d03c6af883b3460e4174127846caca3188514a4e180b8273b4025593e28f"),
    _questions("new_questions_no-json.yaml", "247940137277227a51ad1a269cc832a77203e4dcc2e79ca5b0dbacb1a57b9ac9"),
    _questions("judges.yaml", "a4fd0f891a7f04fe4a04047443089db29f5687a2e6599a3fec7300cafd0c93fd"),
)


def papers_cache() -> Path:
    """Where pulled files live: one folder per pinned commit pair."""
    return cache_dir() / "papers" / f"{TRAINING_COMMIT}-{QUESTIONS_COMMIT}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pull(source_dir: Path | None = None, progress: bool = True) -> Path:
    """Fill the cache with every pinned file (copied from ``source_dir`` or downloaded); return its folder.

    Files already cached with the right digest are skipped, so an interrupted pull resumes.
    """
    target = papers_cache()
    pending = [item for item in PAPER_FILES if not _is_valid(target / item.local, item)]
    with progress_counter(len(pending), progress and bool(pending), "pulling the papers' data") as advance:
        for item in pending:
            _fetch(item, target, source_dir)
            advance(1)
    return target


def _fetch(item: PaperFile, target: Path, source_dir: str | Path | None) -> None:
    """Copy or download one file to the cache, checking its sha256 before it takes its final name."""
    destination = target / item.local
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    if source_dir is not None:
        origin = Path(source_dir).expanduser() / item.local
        if not origin.is_file():
            raise EmkitError(f"{item.local} is missing from the local copy", where=source_dir,
                             fix="point --from at a folder holding training/ and eval_questions/")
        shutil.copyfile(origin, partial)
    else:
        _download(item.url, partial)
    actual = sha256_of(partial)
    if actual != item.sha256:
        partial.unlink()
        raise EmkitError(f"{item.local} has sha256 {actual[:12]}..., expected {item.sha256[:12]}...",
                         fix="the source differs from the pinned upstream file; re-download or fix the copy")
    partial.replace(destination)


def paper_file(local: str) -> Path:
    """Path of one of the papers' files: from ``$EMKIT_DATA`` if set, else from the pulled cache."""
    item = next((candidate for candidate in PAPER_FILES if candidate.local == local), None)
    if item is None:
        known = ", ".join(sorted(Path(p.local).name.split(".")[0] for p in PAPER_FILES))
        raise EmkitError(f"unknown paper file '{local}'", fix=f"use one of: {known}")
    override = data_override()
    if override is not None:
        path = override / local
        if not path.is_file():
            raise EmkitError(f"{local} not found under ${DATA_ENV}", where=override,
                             fix=f"point ${DATA_ENV} at a folder holding training/ and eval_questions/")
        return path
    path = papers_cache() / local
    if not path.is_file():
        raise EmkitError(f"the papers' file {local} has not been pulled yet",
                         fix=f"run `emkit data pull` (or `emkit data pull --from DIR`, or set ${DATA_ENV})")
    return path


def _is_valid(path: Path, item: PaperFile) -> bool:
    return path.is_file() and sha256_of(path) == item.sha256


def _download(url: str, destination: Path) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with destination.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        destination.unlink(missing_ok=True)
        raise EmkitError(f"download failed for {url}: {exc}",
                         fix="check the network, or use `emkit data pull --from DIR` with a local copy") from None
