"""Training one item: LoRA on the frozen backbone (trunk outputs cached once) or full fine-tuning."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

from core.decoding import decode
from training.decoding import tune_thresholds
from training.encoder import TARGET_PRESETS, LoRALinear, ScoringModel, attach_lora
from training.metrics import evaluate, quadratic_weighted_kappa

Mode = Literal["lora", "full"]


@dataclass(frozen=True)
class TrainConfig:
    mode: Mode = "lora"
    split_layer: int = 3  # first layer with LoRA; layers below are the shared trunk
    targets: str = "all-linear"  # a key of TARGET_PRESETS
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    max_epochs: int = 8
    # Train at least this many optimiser steps (more epochs on small items: 8 epochs of 100 answers are only
    # 32 steps). 0: epochs alone decide, as for the committed ASAP adapters.
    min_steps: int = 0
    patience: int = 2  # epochs without a better validation loss before stopping
    batch_size: int = 32
    dropout: float = 0.1
    frobenius: float = 0.0  # weight of the ||delta W||_F^2 penalty (the paper's eq. 5); 0 = off
    class_weighted: bool = False  # inverse-frequency class weights for skewed items
    # auto: thresholds tuned on validation when they beat argmax there; fixed: the expected score rounded (cuts
    # at k + 0.5), for validation sets too small to tune on; argmax.
    decoding: Literal["auto", "argmax", "fixed"] = "auto"
    seed: int = 13
    # bf16: the training steps' forward and backward under CPU autocast (weights, trunk cache, evaluation and
    # the exported graphs stay fp32), 1.65x faster on a CPU with native bf16; auto: the recipe decides (the
    # small items' recipe takes bf16 where it is native, training/recipes.py), fp32 otherwise.
    step_precision: Literal["auto", "fp32", "bf16"] = "auto"

    def as_dict(self) -> dict[str, object]:
        values = asdict(self)
        # Fields added after the committed adapters were trained leave their fingerprints unchanged at their
        # defaults (so `train` still finds those adapters current).
        for name, default in LATER_FIELDS.items():
            if values[name] == default:
                del values[name]
        return values

    def epochs_for(self, train_answers: int) -> int:
        steps_per_epoch = max(1, -(-train_answers // self.batch_size))
        return max(self.max_epochs, -(-self.min_steps // steps_per_epoch))


LATER_FIELDS: dict[str, object] = {"min_steps": 0, "step_precision": "auto"}


def native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX); elsewhere they are emulated
    and slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_qwk: float
    seconds: float


@dataclass
class TrainResult:
    model: ScoringModel
    best_epoch: int
    curve: list[EpochRecord] = field(default_factory=list)
    thresholds: list[float] | None = None
    metrics: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    steps: int = 0  # optimiser steps taken
    kept_steps: int = 0  # steps behind the kept epoch (never fewer than min_steps where that many were run)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pad(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        ids[position, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[position, : len(row)] = 1
    return ids, mask


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Batches of similar length (little padding); shuffled within and across buckets when rng is given."""
    if rng is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    else:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i] + rng.uniform(-3, 3))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


class FeatureSource:
    """Model inputs for one split. LoRA mode caches the frozen trunk's output once per answer."""

    def __init__(self, model: ScoringModel, ids: list[list[int]], cache_trunk: bool, batch_size: int) -> None:
        self.ids = ids
        self.lengths = [len(row) for row in ids]
        self.cached: list[Tensor] | None = None
        if cache_trunk:
            self.cached = [torch.empty(0)] * len(ids)
            model.trunk.eval()
            with torch.no_grad():
                for batch in length_batches(self.lengths, batch_size * 2, None):
                    input_ids, mask = _pad([ids[i] for i in batch])
                    hidden = model.trunk(input_ids, mask)
                    for row, index in enumerate(batch):
                        self.cached[index] = hidden[row, : self.lengths[index]].clone()

    def logits(self, model: ScoringModel, batch: list[int]) -> Tensor:
        input_ids, mask = _pad([self.ids[i] for i in batch])
        if self.cached is None:
            return model(input_ids, mask)
        hidden = torch.nn.utils.rnn.pad_sequence([self.cached[i] for i in batch], batch_first=True)
        return model.head(hidden, mask)


def predict_proba(model: ScoringModel, source: FeatureSource, batch_size: int) -> NDArray[np.float64]:
    model.eval()
    out = np.zeros((len(source.ids), model.head.classifier.out_features), dtype=np.float64)
    with torch.no_grad():
        for batch in length_batches(source.lengths, batch_size * 2, None):
            out[batch] = source.logits(model, batch).softmax(dim=-1).double().numpy()
    return out


def _frobenius(model: ScoringModel) -> Tensor:
    total = torch.zeros(())
    for module in model.head.modules():
        if isinstance(module, LoRALinear):
            total = total + ((module.lora_b @ module.lora_a) * module.scale).pow(2).sum()
    return total


def train_item(
    model: ScoringModel,
    config: TrainConfig,
    data: dict[str, tuple[list[list[int]], list[int]]],
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainResult:
    """data: split -> (token ids, 0-based label index). Restores the epoch with the best validation QWK."""
    seed_everything(config.seed)
    started = time.perf_counter()
    if config.mode == "lora":
        attach_lora(model, TARGET_PRESETS[config.targets], config.rank, config.alpha)
    num_labels = model.head.classifier.out_features
    sources = {name: FeatureSource(model, ids, config.mode == "lora", config.batch_size)
               for name, (ids, _) in data.items()}
    labels = {name: labels for name, (_, labels) in data.items()}
    seconds = {"trunk_cache": time.perf_counter() - started}

    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(labels["train"]) // config.batch_size)
    epochs = config.epochs_for(len(labels["train"]))
    total_steps = steps_per_epoch * epochs
    warmup = max(1, total_steps // 16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / (total_steps - warmup)))
    )
    class_weight = None
    if config.class_weighted:
        counts = np.bincount(labels["train"], minlength=num_labels).astype(np.float64)
        class_weight = torch.tensor(counts.sum() / (num_labels * np.maximum(counts, 1.0)), dtype=torch.float32)
    train_targets = torch.tensor(labels["train"])
    val_targets = np.asarray(labels["validation"])
    rng = random.Random(config.seed)

    result = TrainResult(model=model, best_epoch=0)
    best_state: dict[str, Tensor] | None = None
    best_qwk, best_loss, since_better = -2.0, float("inf"), 0
    kept_loss = float("inf")  # validation loss of the kept epoch: breaks QWK ties
    steps = 0
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        for batch in length_batches(sources["train"].lengths, config.batch_size, rng):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.step_precision == "bf16"):
                logits = sources["train"].logits(model, batch)
            loss = F.cross_entropy(logits.float(), train_targets[batch], weight=class_weight)
            if config.frobenius:
                loss = loss + config.frobenius * _frobenius(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            losses.append(loss.item())
            if on_step:
                on_step()
        val_probs = predict_proba(model, sources["validation"], config.batch_size)
        val_loss = float(-np.mean(np.log(val_probs[np.arange(len(val_targets)), val_targets] + 1e-12)))
        val_qwk = quadratic_weighted_kappa(val_targets, val_probs.argmax(axis=1), list(range(num_labels)))
        record = EpochRecord(epoch, float(np.mean(losses)), val_loss, val_qwk, time.perf_counter() - epoch_start)
        result.curve.append(record)
        if on_epoch:
            on_epoch(record)
        # Best validation QWK; on a tie the lower validation loss. Without the tie-break an item whose argmax
        # QWK stays 0.000 (small, skewed) kept epoch 1 while later epochs kept improving the probabilities.
        # min_steps is a floor on what is kept and on when training may stop: before it, no epoch is kept
        # (small items stopped after 9-90 steps with patience 2 and kept a model near chance).
        reached = steps >= config.min_steps or epoch == epochs
        if reached and (val_qwk > best_qwk or (val_qwk == best_qwk and val_loss < kept_loss)):
            best_qwk, result.best_epoch, kept_loss, result.kept_steps = val_qwk, epoch, val_loss, steps
            best_state = copy.deepcopy({k: v for k, v in model.state_dict().items()})
        if val_loss < best_loss - 1e-4:
            best_loss, since_better = val_loss, 0
        else:
            since_better += 1
            if since_better >= config.patience and reached:
                break
    result.steps = steps
    if best_state is not None:
        model.load_state_dict(best_state)
    seconds["train"] = time.perf_counter() - started - seconds["trunk_cache"]

    eval_start = time.perf_counter()
    probabilities = {name: predict_proba(model, sources[name], config.batch_size)
                     for name in ("validation", "test") if name in sources}
    label_space = list(range(num_labels))
    if config.decoding == "fixed":
        result.thresholds = [k + 0.5 for k in range(num_labels - 1)]
    elif config.decoding == "auto":
        thresholds, tuned_qwk = tune_thresholds(probabilities["validation"], labels["validation"])
        argmax_qwk = quadratic_weighted_kappa(labels["validation"], decode(probabilities["validation"], None),
                                              label_space)
        result.thresholds = thresholds if tuned_qwk > argmax_qwk else None
    for name in ("validation", "test"):
        if name in probabilities:
            predicted = decode(probabilities[name], result.thresholds)
            result.metrics[name] = evaluate(labels[name], list(predicted), label_space)
            result.metrics[name]["qwk_argmax"] = quadratic_weighted_kappa(
                labels[name], list(decode(probabilities[name], None)), label_space)
    seconds["evaluate"] = time.perf_counter() - eval_start
    seconds["total"] = time.perf_counter() - started
    result.seconds = seconds
    return result
