"""Evidence for a score: the human-scored training answers of the same item that the item's head finds most
alike, in its own pooled features (what its classifier reads), with the scores humans gave them.

One file per item version (`items/<id>/<version>.evidence.npz`, written by export/evidence.py, listed with
its hash in the manifest): unit-length vectors quantised to int8 (cosine error ~1e-2, a quarter of fp32's
bytes), the answers' stored ids and 0-based human scores, and their texts only where the item was exported
with them (student answers are personal data: off by default).

A brute-force cosine search: an item has a few thousand training answers at most, so one (rows x answers)
matrix product per micro-batch costs microseconds per row; an approximate index (FAISS, Annoy) would add a
dependency and a build step for nothing at this size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.fingerprints import file_sha256

EVIDENCE_K = 5  # neighbours shown per answer
QUANT = 127.0  # int8 scale of a unit vector's components


@dataclass(frozen=True)
class EvidenceFile:
    """The manifest's description of an item's evidence index."""

    path: Path
    sha256: str
    answers: int
    member: str  # whose pooled features: "asap-01@v1"
    texts: bool

    def describe(self) -> dict[str, Any]:
        """What GET /items shows of it."""
        return {"answers": self.answers, "k": EVIDENCE_K, "texts": self.texts, "member": self.member}


@dataclass(frozen=True)
class Evidence:
    body: dict[str, Any]  # the response's `evidence` object
    disagrees: bool  # the review reason neighbours_disagree


def quantise(vectors: NDArray[np.float32]) -> NDArray[np.int8]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    quantised: NDArray[np.int8] = np.clip(np.rint(unit * QUANT), -127, 127).astype(np.int8)
    return quantised


def write_index(path: Path, vectors: NDArray[np.float32], ids: list[str], scores: list[int],
                texts: list[str] | None) -> None:
    arrays: dict[str, Any] = {"vectors": quantise(vectors), "ids": np.asarray(ids, dtype=np.str_),
                              "scores": np.asarray(scores, dtype=np.int16)}
    if texts is not None:
        arrays["texts"] = np.asarray(texts, dtype=np.str_)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


class EvidenceIndex:
    def __init__(self, file: EvidenceFile) -> None:
        if file_sha256(file.path) != file.sha256:
            raise ValueError(f"{file.path.name} does not match the hash in the manifest")
        with np.load(file.path, allow_pickle=False) as data:
            vectors = data["vectors"].astype(np.float32) / QUANT
            self.ids: list[str] = [str(value) for value in data["ids"]]
            self.scores: NDArray[np.int64] = data["scores"].astype(np.int64)
            self.texts: list[str] | None = [str(value) for value in data["texts"]] if "texts" in data else None
        # Renormalised after quantisation, so a stored answer's similarity to itself is exactly 1.
        self.unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if len(self.ids) != self.unit.shape[0] or len(self.scores) != self.unit.shape[0]:
            raise ValueError(f"{file.path.name}: vectors, ids and scores differ in length")
        self.file = file
        # Each score point's answers, found once here rather than per explained answer.
        self.by_score = [np.flatnonzero(self.scores == index) for index in range(int(self.scores.max(initial=0)) + 1)]

    @property
    def dim(self) -> int:
        return int(self.unit.shape[1])

    def explain(self, pooled: NDArray[np.float32], served: list[int], labels: list[int]) -> list[Evidence]:
        """One evidence object per row: `served` are the rows' served class indices, `labels` the item's score
        points (class index -> score)."""
        if pooled.shape[1] != self.dim:
            raise ValueError(f"pooled features of width {pooled.shape[1]}, the index has {self.dim}")
        queries = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        similarity = queries @ self.unit.T  # (rows, answers)
        k = min(EVIDENCE_K, similarity.shape[1])
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        return [self._one(similarity[row], nearest[row], served[row], labels) for row in range(len(served))]

    def _one(self, similarity: NDArray[np.float32], nearest: NDArray[np.intp], served: int,
             labels: list[int]) -> Evidence:
        order = nearest[np.argsort(-similarity[nearest], kind="stable")]
        neighbours = [self._answer(int(index), similarity, labels) for index in order]
        votes = np.bincount(self.scores[order], minlength=len(labels)).astype(np.float64)
        # Ties in the vote go to the score with the larger summed similarity.
        votes += np.bincount(self.scores[order], weights=similarity[order], minlength=len(labels)) * 1e-3
        majority = int(np.argmax(votes))
        by_score = []
        for members in self.by_score:
            if members.size:
                best = int(members[np.argmax(similarity[members])])
                by_score.append(self._answer(best, similarity, labels))
        body = {"member": self.file.member, "neighbours": neighbours, "neighbour_score": labels[majority],
                "agrees": majority == served, "nearest_by_score": by_score}
        # neighbours_disagree: most of the k neighbours (not just a plurality) carry another human score.
        return Evidence(body, majority != served and int(votes[majority]) * 2 > len(order))

    def _answer(self, index: int, similarity: NDArray[np.float32], labels: list[int]) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": self.ids[index], "score": labels[int(self.scores[index])],
                                  "similarity": round(float(similarity[index]), 4)}
        if self.texts is not None:
            answer["text"] = self.texts[index]
        return answer
