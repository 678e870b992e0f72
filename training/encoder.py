"""A BERT encoder written as an explicit loop over layers, with optional LoRA on its linear modules.

The explicit loop is what makes the split possible: layers below `split_layer` form the frozen trunk
shared by every item; layers from `split_layer` up carry the item's LoRA and, with mean pooling and a
linear classifier, form the item's head. trunk(head(x)) is the same computation as the whole model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from training.encoder_layout import LAYOUTS, RELATIVE_BIAS_WEIGHT, Layout, RelativePositionBias

# Linear modules of one layer, by the short names used in configs and adapter files.
LINEAR_NAMES = ("query", "key", "value", "attn_out", "inter", "out")
TARGET_PRESETS = {"qv": ("query", "value"), "all-linear": LINEAR_NAMES}


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    architecture: str = "bert"  # a key of encoder_layout.LAYOUTS
    relative_buckets: int = 0  # MPNet's relative-position bias buckets; 0: none

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.architecture]

    @classmethod
    def from_hf(cls, folder: Path) -> EncoderConfig:
        raw = json.loads((folder / "config.json").read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported activation {raw.get('hidden_act')!r}")
        architecture = "mpnet" if raw.get("model_type") == "mpnet" else "bert"
        return cls(
            vocab_size=raw["vocab_size"],
            hidden=raw["hidden_size"],
            layers=raw["num_hidden_layers"],
            heads=raw["num_attention_heads"],
            intermediate=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab=raw.get("type_vocab_size", 2) if architecture == "bert" else 0,
            layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
            architecture=architecture,
            relative_buckets=raw.get("relative_attention_num_buckets", 32) if architecture == "mpnet" else 0,
        )


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) * B A x, with W, b frozen; B starts at zero so training starts at W."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged_weight(self) -> Tensor:
        return self.base.weight + (self.lora_b @ self.lora_a) * self.scale


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig, dropout: float) -> None:
        super().__init__()
        hidden = config.hidden
        self.heads = config.heads
        self.query: nn.Module = nn.Linear(hidden, hidden)
        self.key: nn.Module = nn.Linear(hidden, hidden)
        self.value: nn.Module = nn.Linear(hidden, hidden)
        self.attn_out: nn.Module = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.inter: nn.Module = nn.Linear(hidden, config.intermediate)
        self.out: nn.Module = nn.Linear(config.intermediate, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: Tensor, mask_bias: Tensor) -> Tensor:
        batch, seq, width = hidden.shape
        head_dim = width // self.heads

        def split_heads(x: Tensor) -> Tensor:
            return x.view(batch, seq, self.heads, head_dim).transpose(1, 2)

        query = split_heads(self.query(hidden))
        key = split_heads(self.key(hidden))
        value = split_heads(self.value(hidden))
        scores = query @ key.transpose(-1, -2) / math.sqrt(head_dim) + mask_bias
        context = (scores.softmax(dim=-1) @ value).transpose(1, 2).reshape(batch, seq, width)
        hidden = self.attn_norm(self.dropout(self.attn_out(context)) + hidden)
        return self.out_norm(self.dropout(self.out(F.gelu(self.inter(hidden)))) + hidden)


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden)
        self.position = nn.Embedding(config.max_positions, config.hidden)
        self.position_offset = config.layout.position_offset
        self.token_type = nn.Embedding(config.type_vocab, config.hidden) if config.type_vocab else None
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor) -> Tensor:
        # Batches are right-padded, so every real token's position is its index (+ the layout's offset).
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if self.position_offset:  # only MPNet: BERT-layout trunk graphs stay as they were exported
            positions = positions + self.position_offset
        embedded = self.word(input_ids) + self.position(positions)
        if self.token_type is not None:
            embedded = embedded + self.token_type.weight[0]  # token type 0 everywhere: answers are one segment
        return self.norm(embedded)


def mask_to_bias(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(batch, seq) 1/0 mask -> additive (batch, 1, 1, seq) bias."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def attention_bias(attention_mask: Tensor, dtype: torch.dtype, position_bias: RelativePositionBias | None) -> Tensor:
    """The padding mask's bias, plus MPNet's relative-position bias where the backbone has one."""
    bias = mask_to_bias(attention_mask, dtype)
    if position_bias is None:
        return bias
    return bias + position_bias(attention_mask.shape[1], attention_mask.device).to(dtype)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class Trunk(nn.Module):
    """Embeddings + layers [0, split_layer): frozen, identical for every item."""

    def __init__(self, embeddings: Embeddings, layers: list[EncoderLayer],
                 position_bias: RelativePositionBias | None = None) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)
        self.position_bias = position_bias

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.embeddings(input_ids)
        bias = attention_bias(attention_mask, hidden.dtype, self.position_bias)
        for layer in self.layers:
            hidden = layer(hidden, bias)
        return hidden


class Head(nn.Module):
    """Layers [split_layer, L) (with the item's LoRA) + mean pooling + linear classifier."""

    def __init__(self, layers: list[EncoderLayer], hidden: int, num_labels: int, dropout: float,
                 position_bias: RelativePositionBias | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.position_bias = position_bias
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        bias = attention_bias(attention_mask, hidden.dtype, self.position_bias)
        for layer in self.layers:
            hidden = layer(hidden, bias)
        return self.classifier(self.dropout(mean_pool(hidden, attention_mask)))


class ScoringModel(nn.Module):
    def __init__(self, trunk: Trunk, head: Head, split_layer: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.split_layer = split_layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.trunk(input_ids, attention_mask), attention_mask)


def _load_layer(layer: EncoderLayer, weights: dict[str, Tensor], prefix: str, layout: Layout) -> None:
    for short, hf in layout.linears.items():
        linear = getattr(layer, short)
        linear.weight.data.copy_(weights[f"{prefix}.{hf}.weight"])
        linear.bias.data.copy_(weights[f"{prefix}.{hf}.bias"])
    for norm, hf in ((layer.attn_norm, layout.attn_norm), (layer.out_norm, layout.out_norm)):
        norm.weight.data.copy_(weights[f"{prefix}.{hf}.weight"])
        norm.bias.data.copy_(weights[f"{prefix}.{hf}.bias"])


def load_backbone_weights(folder: Path) -> tuple[EncoderConfig, dict[str, Tensor]]:
    weights = load_file(str(folder / "model.safetensors"))
    # Some checkpoints are saved from BertFor* classes with a "bert." prefix.
    weights = {key.removeprefix("bert."): value for key, value in weights.items()}
    return EncoderConfig.from_hf(folder), weights


def build_model(
    folder: Path,
    split_layer: int,
    num_labels: int,
    dropout: float = 0.1,
    backbone: tuple[EncoderConfig, dict[str, Tensor]] | None = None,
) -> ScoringModel:
    """The backbone's weights in an explicit trunk/head model; nothing trainable is attached yet."""
    config, weights = backbone or load_backbone_weights(folder)
    if not 0 <= split_layer <= config.layers:
        raise ValueError(f"split layer {split_layer} outside 0..{config.layers}")
    embeddings = Embeddings(config)
    embeddings.word.weight.data.copy_(weights["embeddings.word_embeddings.weight"])
    embeddings.position.weight.data.copy_(weights["embeddings.position_embeddings.weight"])
    if embeddings.token_type is not None:
        embeddings.token_type.weight.data.copy_(weights["embeddings.token_type_embeddings.weight"])
    embeddings.norm.weight.data.copy_(weights["embeddings.LayerNorm.weight"])
    embeddings.norm.bias.data.copy_(weights["embeddings.LayerNorm.bias"])
    layers = []
    for index in range(config.layers):
        layer = EncoderLayer(config, dropout)
        _load_layer(layer, weights, f"encoder.layer.{index}", config.layout)
        layers.append(layer)
    position_bias = None
    if config.relative_buckets:
        # one module, frozen, shared by trunk and head (as MPNet shares it over all layers)
        position_bias = RelativePositionBias(config.relative_buckets, config.heads)
        position_bias.bias.weight.data.copy_(weights[RELATIVE_BIAS_WEIGHT])
    trunk = Trunk(embeddings, layers[:split_layer], position_bias)
    head = Head(layers[split_layer:], config.hidden, num_labels, dropout, position_bias)
    nn.init.normal_(head.classifier.weight, std=0.02)
    nn.init.zeros_(head.classifier.bias)
    return ScoringModel(trunk, head, split_layer)


def attach_lora(model: ScoringModel, targets: tuple[str, ...], rank: int, alpha: float) -> None:
    """Freeze everything, then add trainable LoRA to `targets` in every head layer + train the classifier."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in model.head.layers:
        for name in targets:
            setattr(layer, name, LoRALinear(getattr(layer, name), rank, alpha))
    for parameter in model.head.classifier.parameters():
        parameter.requires_grad_(True)


def adapter_state(model: ScoringModel) -> dict[str, Tensor]:
    """Only what an item owns: LoRA A/B per head layer (numbered in the full model) + classifier."""
    state: dict[str, Tensor] = {}
    for offset, layer in enumerate(model.head.layers):
        for name in LINEAR_NAMES:
            module = getattr(layer, name)
            if isinstance(module, LoRALinear):
                prefix = f"layers.{model.split_layer + offset}.{name}"
                state[f"{prefix}.lora_a"] = module.lora_a.detach().clone().contiguous()
                state[f"{prefix}.lora_b"] = module.lora_b.detach().clone().contiguous()
    state["classifier.weight"] = model.head.classifier.weight.detach().clone().contiguous()
    state["classifier.bias"] = model.head.classifier.bias.detach().clone().contiguous()
    return state


def load_adapter_state(model: ScoringModel, state: dict[str, Tensor]) -> None:
    """Inverse of adapter_state; refuses any shape or name mismatch."""
    expected = adapter_state(model)
    if set(expected) != set(state):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"adapter does not fit the model: missing {missing[:4]}, unexpected {extra[:4]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"adapter tensor {key} has shape {tuple(value.shape)}, "
                             f"model expects {tuple(expected[key].shape)}")
    with torch.no_grad():
        for offset, layer in enumerate(model.head.layers):
            for name in LINEAR_NAMES:
                module = getattr(layer, name)
                if isinstance(module, LoRALinear):
                    prefix = f"layers.{model.split_layer + offset}.{name}"
                    module.lora_a.copy_(state[f"{prefix}.lora_a"])
                    module.lora_b.copy_(state[f"{prefix}.lora_b"])
        model.head.classifier.weight.copy_(state["classifier.weight"])
        model.head.classifier.bias.copy_(state["classifier.bias"])


def merge_lora(model: ScoringModel) -> None:
    """Fold every LoRA into its base linear (for export): the head becomes a plain BERT stack."""
    with torch.no_grad():
        for layer in model.head.layers:
            for name in LINEAR_NAMES:
                module = getattr(layer, name)
                if isinstance(module, LoRALinear):
                    merged = nn.Linear(module.base.in_features, module.base.out_features)
                    merged.weight.copy_(module.merged_weight())
                    merged.bias.copy_(module.base.bias)
                    setattr(layer, name, merged)
