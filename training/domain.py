"""`python -m training domain-adapt`: masked-language-model pre-training of a backbone on the assessment's own
answers (the paper's step before any per-item training), learned as a low-rank update of every layer.

Only the training answers of the ASAP items are read (never validation or test answers: validation answers
measure the masked-token loss before and after). The update is LoRA on every linear module of every layer;
its factors (a few MB) are what is committed, and `training.backbones` merges them into the packaged weights
on set-up. The packaged sentence-embedding checkpoint has no MLM head, so a fresh one is learned alongside
(transform + LayerNorm, decoder tied to the frozen word embeddings); it is thrown away afterwards.
`--full` updates every layer weight instead (no low-rank form), to measure what the low-rank form loses."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from core.fingerprints import file_sha256
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import resolve_backbone
from training.domain_merge import DELTA_FILE
from training.encoder import LINEAR_NAMES, LoRALinear, ScoringModel, build_model, mask_to_bias
from training.tokenize import encode_texts, load_tokenizer
from training.trainer import length_batches

MASK_SHARE = 0.15
FULL_LEARNING_RATE = 5e-5  # the paper's, for --full (every weight updated)


@dataclass
class DomainConfig:
    base: str = "minilm-en"
    rank: int = 16
    alpha: float = 32.0
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-4  # LoRA; full updates use the paper's 5e-5
    warmup_share: float = 0.1
    clip: float = 1.0
    seed: int = 13
    full: bool = False


class MaskedLM(nn.Module):
    """Every layer of the backbone + a fresh MLM head whose decoder is the frozen word-embedding matrix."""

    def __init__(self, model: ScoringModel) -> None:
        super().__init__()
        self.embeddings = model.trunk.embeddings
        self.layers = nn.ModuleList([*model.trunk.layers, *model.head.layers])
        hidden = self.embeddings.word.weight.shape[1]
        self.transform = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.decoder_bias = nn.Parameter(torch.zeros(self.embeddings.word.weight.shape[0]))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, predicted: Tensor) -> Tensor:
        """Vocabulary logits at the `predicted` positions only (the 15 %): the 30k-wide decoder over every
        token was most of the time and memory of a step."""
        hidden = self.embeddings(input_ids)
        bias = mask_to_bias(attention_mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, bias)
        states = self.norm(F.gelu(self.transform(hidden[predicted])))
        return F.linear(states, self.embeddings.word.weight, self.decoder_bias)


def answers(split: str) -> list[str]:
    return [text for item_id in ASAP_ITEMS for text, _ in getattr(load_asap_item(item_id), split)]


def mask_tokens(ids: Tensor, attention: Tensor, special: set[int], mask_id: int, vocab: int,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT's rule: 15 % of the real tokens are predicted; of those 80 % become [MASK], 10 % a random token."""
    candidates = attention.bool() & ~torch.isin(ids, torch.tensor(sorted(special)))
    chosen = (torch.rand(ids.shape, generator=generator) < MASK_SHARE) & candidates
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    masked = ids.clone()
    masked[chosen & (roll < 0.8)] = mask_id
    random_pick = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[random_pick] = torch.randint(vocab, ids.shape, generator=generator)[random_pick]
    return masked, labels


def _pad(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
        attention[index, : len(row)] = 1
    return ids, attention


def prepare(model: ScoringModel, config: DomainConfig) -> tuple[MaskedLM, list[nn.Parameter]]:
    masked_lm = MaskedLM(model)
    for parameter in masked_lm.parameters():
        parameter.requires_grad_(False)
    if config.full:
        for layer in masked_lm.layers:
            for parameter in layer.parameters():
                parameter.requires_grad_(True)
    else:
        for layer in masked_lm.layers:
            for name in LINEAR_NAMES:
                setattr(layer, name, LoRALinear(getattr(layer, name), config.rank, config.alpha))
    for module in (masked_lm.transform, masked_lm.norm):
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    masked_lm.decoder_bias.requires_grad_(True)
    return masked_lm, [p for p in masked_lm.parameters() if p.requires_grad]


def delta_state(masked_lm: MaskedLM) -> dict[str, Tensor]:
    """The low-rank factors per layer and linear module: what is committed."""
    state: dict[str, Tensor] = {}
    for index, layer in enumerate(masked_lm.layers):
        for name in LINEAR_NAMES:
            module = getattr(layer, name)
            if isinstance(module, LoRALinear):
                state[f"layers.{index}.{name}.lora_a"] = module.lora_a.detach().clone().contiguous()
                state[f"layers.{index}.{name}.lora_b"] = (module.lora_b * module.scale).detach().clone().contiguous()
    return state


def masked_loss(masked_lm: MaskedLM, rows: list[list[int]], special: set[int], mask_id: int, vocab: int,
                seed: int) -> float:
    """Mean masked-token cross-entropy over `rows` with a fixed masking (comparable before and after)."""
    generator = torch.Generator().manual_seed(seed)
    masked_lm.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in length_batches([len(row) for row in rows], 64, None):
            ids, attention = _pad([rows[i] for i in batch])
            inputs, labels = mask_tokens(ids, attention, special, mask_id, vocab, generator)
            predicted = labels != -100
            logits = masked_lm(inputs, attention, predicted)
            total += float(F.cross_entropy(logits, labels[predicted], reduction="sum"))
            count += int(predicted.sum())
    return total / max(count, 1)


def adapt(config: DomainConfig, out: Path, work: Path) -> dict[str, Any]:
    """Train, write out/delta.safetensors (low-rank) and out/domain.json; resumable per epoch from the
    checkpoint in `work` (the whole model: not for committing)."""
    torch.manual_seed(config.seed)
    backbone = resolve_backbone(config.base)
    tokenizer = load_tokenizer(backbone.path, backbone.spec.max_length)
    train_rows = encode_texts(tokenizer, answers("train"), backbone.spec.text_prefix)
    held_out = encode_texts(tokenizer, answers("validation"), backbone.spec.text_prefix)
    special = {tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]")} - {None}
    mask_id = int(tokenizer.token_to_id("[MASK]"))
    model = build_model(backbone.path, 0, 2, dropout=0.1)
    masked_lm, trainable = prepare(model, config)
    vocab = masked_lm.embeddings.word.weight.shape[0]
    before = masked_loss(masked_lm, held_out, special, mask_id, vocab, config.seed)
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate if not config.full else FULL_LEARNING_RATE,
                                  weight_decay=0.01)
    steps_per_epoch = -(-len(train_rows) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(total * config.warmup_share))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    start_epoch, seconds = 0, 0.0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        masked_lm.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        start_epoch, seconds = saved["epoch"], saved["seconds"]
    generator = torch.Generator().manual_seed(config.seed)
    curve = []
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        masked_lm.train()
        shuffle = random.Random(config.seed + epoch)
        batches = length_batches([len(row) for row in train_rows], config.batch_size, shuffle)
        for batch in tqdm(batches, desc=f"domain MLM epoch {epoch + 1}/{config.epochs}", unit="step"):
            ids, attention = _pad([train_rows[i] for i in batch])
            inputs, labels = mask_tokens(ids, attention, special, mask_id, vocab, generator)
            predicted = labels != -100
            loss = F.cross_entropy(masked_lm(inputs, attention, predicted), labels[predicted])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.clip)
            optimizer.step()
            schedule.step()
        seconds += time.perf_counter() - started
        curve.append({"epoch": epoch + 1, "held_out_loss": masked_loss(masked_lm, held_out, special, mask_id, vocab,
                                                                       config.seed)})
        tqdm.write(f"epoch {epoch + 1}: held-out masked-token loss {curve[-1]['held_out_loss']:.3f}")
        torch.save({"model": masked_lm.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch + 1, "seconds": seconds}, checkpoint)
    after = masked_loss(masked_lm, held_out, special, mask_id, vocab, config.seed)
    report = {"config": vars(config), "base": backbone.describe(), "answers": len(train_rows),
              "held_out_answers": len(held_out), "held_out_loss": {"before": before, "after": after},
              "curve": curve, "train_seconds": seconds}
    if not config.full:
        save_file(delta_state(masked_lm), str(out / DELTA_FILE))
        report["delta_sha256"] = file_sha256(out / DELTA_FILE)
    (out / "domain.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
