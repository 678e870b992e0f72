"""The lexical member: fitted by scikit-learn, shipped and run as ONNX (no scikit-learn at serving time)."""

from __future__ import annotations

import numpy as np
import pytest

from core.lexical_runtime import LexicalHead
from training.lexical import fit_lexical

TRAIN = [("the acid dissolves the marble", 2), ("acid dissolves marble quickly", 2), ("marble and acid react", 2),
         ("the rain is wet", 0), ("rain falls", 0), ("it is wet outside", 0),
         ("the stone changes a bit", 1), ("stone changes in rain", 1), ("some change to the stone", 1)] * 3


def test_onnx_graph_scores_in_class_order_without_sklearn() -> None:
    model = fit_lexical([text for text, _ in TRAIN], [score for _, score in TRAIN], 3)
    head = LexicalHead(model)
    probabilities = head.probabilities(["acid dissolves the marble", "rain is wet", "Wärme und Säure"])
    assert probabilities.shape == (3, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert probabilities[0].argmax() == 2 and probabilities[1].argmax() == 0
    assert head.nbytes == len(model) > 0


def test_a_score_missing_from_training_gets_probability_zero() -> None:
    model = fit_lexical([text for text, _ in TRAIN], [2 if score == 2 else 0 for _, score in TRAIN], 4)
    probabilities = LexicalHead(model).probabilities(["acid dissolves the marble", "rain is wet"])
    assert probabilities.shape == (2, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities[:, [1, 3]] == 0).all() and probabilities[0].argmax() == 2


def test_one_score_is_not_enough() -> None:
    with pytest.raises(ValueError, match="at least two scores"):
        fit_lexical(["a b", "c d"], [1, 1], 3)


def test_refit_serves_a_train_plus_validation_fit_but_chooses_on_the_train_fit() -> None:
    from training.data import ItemData, ScoreRange
    from training.ensemble_members import lexical_candidate

    validation = [("acid eats the marble away", 2), ("wet rain", 0), ("the stone changed", 1)] * 2
    test = [("marble eaten by acid", 2), ("rain", 0), ("stone changed slowly", 1)]
    item = ItemData("refit", ScoreRange(0, 2), train=TRAIN, validation=validation, test=test)
    plain, refit = lexical_candidate(item, refit=False), lexical_candidate(item, refit=True)
    assert np.array_equal(plain.probabilities["validation"], refit.probabilities["validation"])
    served = LexicalHead(refit.onnx).probabilities([text for text, _ in test])
    assert np.array_equal(refit.probabilities["test"], served)
    both = fit_lexical([text for text, _ in TRAIN + validation], [score for _, score in TRAIN + validation], 3, 13)
    assert refit.onnx == both and plain.onnx != both


def test_the_same_fit_gives_the_same_bytes_in_every_process() -> None:
    """The graph's hash names the member in ensemble.json: a rebuild must not change it by set order."""
    import os
    import subprocess
    import sys

    script = ("import hashlib, sys; from tests.training.test_lexical import TRAIN; "
              "from training.lexical import fit_lexical; "
              "sys.stdout.write(hashlib.sha256(fit_lexical([t for t, _ in TRAIN], [s for _, s in TRAIN], 3))"
              ".hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1
