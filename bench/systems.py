"""The three systems under test behind one small interface. Each runs in its own process (bench.worker).

All three decode with the exported thresholds, so their scores on the same rows can be compared.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.workload import Row

Spec = dict[str, Any]  # the item's manifest entry (labels, thresholds)


class System(Protocol):
    def load(self, items: list[str]) -> None:
        """Make these items resident (as far as the system keeps items resident at all)."""

    def evict(self, item: str) -> None: ...

    def ensure(self, item: str) -> None:
        """Load the item if it is not resident: the cold part of a task switch."""

    def switch(self, item: str) -> None:
        """What it costs to make a resident item the active one: the warm part of a task switch."""

    def score(self, rows: list[Row]) -> list[int]:
        """Score indices (0-based) per row, in order."""


def _decode(specs: dict[str, Spec], item: str, logits: np.ndarray) -> list[int]:
    from core.decoding import decode, softmax

    return [int(value) for value in decode(softmax(logits), specs[item]["thresholds"])]


def _groups(rows: list[Row]) -> dict[str, list[int]]:
    by_item: dict[str, list[int]] = defaultdict(list)
    for index, (item, _) in enumerate(rows):
        by_item[item].append(index)
    return by_item


class Engine:
    """This service's backend as the HTTP layer uses it: one trunk run per batch, heads from the cache."""

    def __init__(self, folder: Path, threads: int, precision: str = "fp32") -> None:
        from app.onnx_backend import OnnxBackend
        from app.settings import Settings

        settings = Settings(artifacts=folder, threads=threads, precision=precision,
                            cache_bytes=1 << 40, device="cpu", max_batch_rows=64)
        self.backend = OnnxBackend(settings)
        self.backend.warm_up()

    def load(self, items: list[str]) -> None:
        for item in items:
            self.ensure(item)

    def evict(self, item: str) -> None:
        self.backend.cache.drop(item)

    def ensure(self, item: str) -> None:
        self.backend.cache.get(self.backend.artifacts.items[item])

    def switch(self, item: str) -> None:
        self.backend.cache.get(self.backend.artifacts.items[item])

    def score(self, rows: list[Row]) -> list[int]:
        from app.backend import AnswerRow, score_now

        outcomes = score_now(self.backend, [AnswerRow(item, text) for item, text in rows])
        specs = self.backend.artifacts.items
        scores = []
        for outcome in outcomes:
            score = getattr(outcome, "score", None)
            if score is None:
                raise RuntimeError(f"engine failed a row: {outcome}")
            scores.append(specs[outcome.item_id].labels.index(score))  # type: ignore[union-attr]
        return scores


class FullModels:
    """One complete ONNX model per item, created on demand and kept in an LRU of `capacity` sessions."""

    def __init__(self, files: dict[str, Path], specs: dict[str, Spec], tokenizer: Path, max_length: int,
                 threads: int, capacity: int) -> None:
        from core.onnx_runtime import TextEncoder

        self.files = files
        self.specs = specs
        self.threads = threads
        self.capacity = capacity
        self.encoder = TextEncoder(tokenizer, max_length, "")
        self.sessions: OrderedDict[str, Any] = OrderedDict()

    def load(self, items: list[str]) -> None:
        from core.onnx_runtime import release_freed_memory

        for item in items[: self.capacity]:
            self.ensure(item)
        release_freed_memory()  # what the engine does after its loads: the same for the baseline

    def evict(self, item: str) -> None:
        self.sessions.pop(item, None)

    def ensure(self, item: str) -> None:
        if item in self.sessions:
            self.sessions.move_to_end(item)
            return
        from core.onnx_runtime import load_session

        while len(self.sessions) >= self.capacity:
            self.sessions.popitem(last=False)
        # The engine's session options, arena off: with one arena per session each would keep its peak
        # allocation after its first run, and the baseline should get its leanest memory, not its worst.
        self.sessions[item] = load_session(self.files[item], self.threads, arena=False)

    def switch(self, item: str) -> None:
        self.ensure(item)

    def score(self, rows: list[Row]) -> list[int]:
        from core.onnx_runtime import pad

        scores = [0] * len(rows)
        encoded = self.encoder.encode([text for _, text in rows])
        for item, indices in _groups(rows).items():
            self.ensure(item)
            ids, mask = pad([encoded[index][0] for index in indices])
            logits = self.sessions[item].run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
            for index, score in zip(indices, _decode(self.specs, item, logits), strict=True):
                scores[index] = score
        return scores


class NaivePeft:
    """What a user writes without us: transformers BertModel + peft, adapters switched by set_adapter.

    peft's add_adapter and set_adapter walk every module of every loaded adapter, so their cost grows with
    the number loaded (87 ms per set_adapter at 100, measured). Beyond `capacity` adapters the natural code
    keeps an LRU and deletes the oldest, as FullModels does."""

    def __init__(self, backbone: Path, files: dict[str, Path], specs: dict[str, Spec], split_layer: int,
                 layers: int, threads: int, capacity: int) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoTokenizer, BertModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.files = files
        self.specs = specs
        self.tokenizer = AutoTokenizer.from_pretrained(str(backbone))  # type: ignore[no-untyped-call]
        base = BertModel.from_pretrained(str(backbone), add_pooling_layer=False).eval()
        self.config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                 layers_to_transform=list(range(split_layer, layers)),
                                 target_modules=["query", "key", "value", "dense"])
        self.model = get_peft_model(base, self.config, adapter_name="base").eval()
        self.capacity = capacity
        self.classifiers: OrderedDict[str, Any] = OrderedDict()

    def load(self, items: list[str]) -> None:
        from core.onnx_runtime import release_freed_memory

        for item in items[: self.capacity]:
            self.ensure(item)
        release_freed_memory()

    def evict(self, item: str) -> None:
        if item in self.classifiers:
            self.model.delete_adapter(item)
            del self.classifiers[item]

    def ensure(self, item: str) -> None:
        if item in self.classifiers:
            self.classifiers.move_to_end(item)
            return
        from peft import set_peft_model_state_dict

        while len(self.classifiers) >= self.capacity:
            self.evict(next(iter(self.classifiers)))
        from safetensors.torch import load_file

        state = load_file(str(self.files[item]))
        classifier = self.torch.nn.Linear(state["classifier.weight"].shape[1], state["classifier.weight"].shape[0])
        classifier.weight.data.copy_(state.pop("classifier.weight"))
        classifier.bias.data.copy_(state.pop("classifier.bias"))
        self.model.add_adapter(item, self.config)
        loaded: Any = set_peft_model_state_dict(self.model, state, adapter_name=item)
        # A renamed key would leave the LoRA at zero and score with the bare backbone, silently.
        missing = [key for key in loaded.missing_keys if f".{item}." in key]
        if loaded.unexpected_keys or missing:
            raise RuntimeError(f"{item}: adapter keys did not load: {loaded.unexpected_keys[:3]} {missing[:3]}")
        self.classifiers[item] = classifier.eval()

    def switch(self, item: str) -> None:
        self.ensure(item)
        self.model.set_adapter(item)

    def score(self, rows: list[Row]) -> list[int]:
        scores = [0] * len(rows)
        for item, indices in _groups(rows).items():
            self.switch(item)
            batch = self.tokenizer([rows[index][1] for index in indices], padding=True, truncation=True,
                                   max_length=128, return_tensors="pt")
            with self.torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                logits = self.classifiers[item](pooled).numpy()
            for index, score in zip(indices, _decode(self.specs, item, logits), strict=True):
                scores[index] = score
        return scores


def timed(action: Any, *args: Any) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started
