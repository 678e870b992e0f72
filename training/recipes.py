"""Training recipes by item size. The committed ASAP adapters (1,300-1,800 answers each) use TrainConfig's
defaults; items of a few hundred answers (what add-item usually gets) need a recipe that cannot collapse.

What goes wrong on small items, and the rule for each (reports/small_data.md measures the recipe as a
whole against the standard one, not each rule alone):
- 8 epochs of 100-200 answers are only 24-56 optimiser steps: train at least SMALL_MIN_STEPS steps, of
  SMALL_BATCH answers each (half the default batch: each step costs half, so 500 answers train in ~50 s on
  2 cores instead of ~100 s, at the same or better QWK on both languages, reports/small_data_check.md);
- skewed labels make the majority score the easy answer: inverse-frequency class weights when the most
  common score holds more than SKEW_SHARE of the answers;
- on a CPU with native bf16, the training steps run under bf16 autocast (1.65x faster, weights and evaluation
  stay fp32; reports/small_data_check.md measures it on both languages);
- thresholds tuned on 10-30 validation answers overfit them: the expected score cut at fixed k + 0.5 when
  there are fewer than TUNE_MIN_VALIDATION validation answers. Argmax instead was measured and lost
  (reports/small_data_check.md: English and German samples, same adapters).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Literal

from training.data import ItemData
from training.trainer import TrainConfig, native_bf16

Recipe = Literal["auto", "standard", "small"]
SMALL_ITEM_ANSWERS = 1000  # training answers below which `auto` picks the small-item recipe
SMALL_MIN_STEPS = 300
SMALL_BATCH = 16  # answers per step on small items, unless --batch-size says otherwise
SKEW_SHARE = 0.5
TUNE_MIN_VALIDATION = 100


def recipe_config(item: ItemData, config: TrainConfig, recipe: Recipe = "auto") -> TrainConfig:
    """`config` adjusted for the item: unchanged for `standard` (and for large items under `auto`)."""
    if recipe == "standard" or (recipe == "auto" and len(item.train) >= SMALL_ITEM_ANSWERS):
        return config
    counts = Counter(score for _, score in item.train)
    skewed = max(counts.values()) / max(1, len(item.train)) > SKEW_SHARE
    decoding = config.decoding
    if decoding == "auto" and len(item.validation) < TUNE_MIN_VALIDATION:
        decoding = "fixed"
    batch_size = SMALL_BATCH if config.batch_size == TrainConfig.batch_size else config.batch_size
    precision = config.step_precision  # an explicit choice is honoured
    if precision == "auto":
        precision = "bf16" if native_bf16() else "fp32"
    return replace(config, min_steps=max(config.min_steps, SMALL_MIN_STEPS), batch_size=batch_size,
                   step_precision=precision,
                   class_weighted=config.class_weighted or skewed, decoding=decoding)
