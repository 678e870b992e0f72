"""The lexical member: a word + character n-gram TF-IDF logistic regression per item, fitted with
scikit-learn and shipped as ONNX (skl2onnx), so serving stays ONNX Runtime only.

The ONNX graph *is* the member: every probability the ensemble is tuned, validated and reported on comes
from running that graph, never from the scikit-learn object, because skl2onnx's text vectoriser is close to
scikit-learn's but not identical (it does not collapse runs of white space before character n-grams; we
measured |p diff| up to 0.04 on ASAP item 1, the same argmax on 99 % of answers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.lexical_runtime import INPUT_NAME, PROBABILITIES_OUTPUT

# The n-gram ranges of the small-item reference (reports/small_data.md); min_df 2 drops the one-off typos
# that make most of the vocabulary and the file size; the character vocabulary is capped for size (~1.5 MB).
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
CHAR_FEATURES = 40_000
INVERSE_REGULARISATION = 10.0
# ONNX Runtime lower-cases under a named locale; "C.UTF-8" exists on glibc images without language packs
# (en_US.UTF-8, skl2onnx's default, does not exist on slim images and the session would refuse to load).
LOCALE = "C.UTF-8"
# RE2 (ONNX Runtime's tokenizer) reads \w as ASCII only; this class keeps German umlauts and ß inside words,
# as scikit-learn's Unicode \w does.
WORD_PATTERN_ONNX = r"[\p{L}\p{N}_]+"
WORD_PATTERN_SKLEARN = r"(?u)\b\w+\b"


def fit_lexical(texts: Sequence[str], classes: Sequence[int], num_labels: int, seed: int = 13) -> bytes:
    """Fit on (answer, 0-based class) pairs and return the ONNX model's bytes: input `text` (string [N, 1]),
    outputs label [N] and probabilities [N, num_labels] in class order."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    present = sorted(set(classes))
    if len(present) < 2:
        raise ValueError(f"the lexical member needs at least two scores in its training answers; saw {present}")
    word = TfidfVectorizer(ngram_range=WORD_NGRAMS, sublinear_tf=True, min_df=2, token_pattern=WORD_PATTERN_SKLEARN)
    char = TfidfVectorizer(analyzer="char", ngram_range=CHAR_NGRAMS, sublinear_tf=True, min_df=2,
                           max_features=CHAR_FEATURES)
    model = make_pipeline(make_union(word, char),
                          LogisticRegression(max_iter=3000, C=INVERSE_REGULARISATION, random_state=seed))
    model.fit(list(texts), list(classes))
    options: dict[Any, Any] = {LogisticRegression: {"zipmap": False},
                               id(word): {"tokenexp": WORD_PATTERN_ONNX, "locale": LOCALE},
                               id(char): {"locale": LOCALE}}
    graph = to_onnx(model, initial_types=[(INPUT_NAME, StringTensorType([None, 1]))], options=options,
                    target_opset={"": 17, "ai.onnx.ml": 3})
    if present != list(range(num_labels)):
        widen(graph, present, num_labels)
    # skl2onnx lists the opset imports in set order, which varies between processes: sorted, the same fit
    # gives the same bytes (and hash, and ensemble version) on every rebuild.
    imports = sorted(graph.opset_import, key=lambda entry: entry.domain)
    del graph.opset_import[:]
    graph.opset_import.extend(imports)
    return bytes(graph.SerializeToString())


def widen(graph: Any, present: list[int], num_labels: int) -> None:
    """LogisticRegression knows only the scores it saw (a rare top score can be missing from a small item's
    training answers); the served vector must cover the whole range: probabilities @ a 0/1 placement matrix,
    exact (products with 1, sums with 0), zero for the unseen scores."""
    from onnx import TensorProto, helper, numpy_helper

    placement = np.zeros((len(present), num_labels), dtype=np.float32)
    placement[np.arange(len(present)), present] = 1.0
    output = graph.graph.output[PROBABILITIES_OUTPUT]
    narrow = output.name
    graph.graph.initializer.append(numpy_helper.from_array(placement, "score_placement"))
    graph.graph.node.append(helper.make_node("MatMul", [narrow, "score_placement"], ["probabilities_all_scores"]))
    graph.graph.output.remove(output)
    graph.graph.output.insert(PROBABILITIES_OUTPUT, helper.make_tensor_value_info(
        "probabilities_all_scores", TensorProto.FLOAT, [None, num_labels]))
