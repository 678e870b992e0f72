"""Both ONNX Runtime packages break each other only when installed in one place; a shadowed one is harmless
(the GPU check runs onnxruntime-gpu from PYTHONPATH over an image that ships onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from app import onnx_backend


def test_the_installed_package_is_found_where_it_was_imported_from() -> None:
    imported = Path(ort.__file__).resolve().parent
    assert imported in {onnx_backend.package_dir("onnxruntime"), onnx_backend.package_dir("onnxruntime-gpu")}


def test_both_packages_in_one_place_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    imported = Path(ort.__file__).resolve().parent
    monkeypatch.setattr(onnx_backend, "package_dir", lambda distribution: imported)
    with pytest.raises(RuntimeError, match="overwrite each"):
        onnx_backend.pick_device("cpu")


def test_a_shadowed_package_elsewhere_is_harmless(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    imported = Path(ort.__file__).resolve().parent
    places = {"onnxruntime": imported, "onnxruntime-gpu": tmp_path / "onnxruntime"}
    monkeypatch.setattr(onnx_backend, "package_dir", places.get)
    assert onnx_backend.pick_device("cpu") == "cpu"
