"""Where each encoder architecture keeps its weights, and MPNet's relative-position attention bias.

The training encoder is one post-LayerNorm transformer loop; BERT-layout checkpoints (MiniLM, E5) and MPNet
differ only in weight names, in MPNet's positions (counted from its padding index + 1, no token types) and
in one relative-position bias, shared by every layer and added to every layer's attention scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Layout:
    linears: dict[str, str]  # short name -> name inside encoder.layer.N
    attn_norm: str
    out_norm: str
    position_offset: int  # the position id of the first token
    token_types: bool


LAYOUTS = {
    "bert": Layout(
        linears={"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                 "attn_out": "attention.output.dense", "inter": "intermediate.dense", "out": "output.dense"},
        attn_norm="attention.output.LayerNorm", out_norm="output.LayerNorm", position_offset=0, token_types=True),
    # MPNet numbers positions from padding_idx + 1 = 2 (as RoBERTa does).
    "mpnet": Layout(
        linears={"query": "attention.attn.q", "key": "attention.attn.k", "value": "attention.attn.v",
                 "attn_out": "attention.attn.o", "inter": "intermediate.dense", "out": "output.dense"},
        attn_norm="attention.LayerNorm", out_norm="output.LayerNorm", position_offset=2, token_types=False),
}
RELATIVE_BIAS_WEIGHT = "encoder.relative_attention_bias.weight"


def relative_position_bucket(relative: Tensor, buckets: int, max_distance: int = 128) -> Tensor:
    """T5-style bidirectional buckets, as MPNet computes them: exact for near offsets, log-spaced beyond."""
    half = buckets // 2
    bucket = (relative > 0).to(torch.long) * half  # keys after the query get the upper half
    distance = relative.abs()
    max_exact = half // 2
    # clamp(min=1) only keeps log() finite where the exact branch is taken anyway
    far = max_exact + (torch.log(distance.clamp(min=1).float() / max_exact)
                       / math.log(max_distance / max_exact) * (half - max_exact)).to(torch.long)
    far = far.clamp(max=half - 1)
    return bucket + torch.where(distance < max_exact, distance, far)


class RelativePositionBias(nn.Module):
    """(1, heads, seq, seq) additive attention bias from the key-minus-query offset of each pair."""

    def __init__(self, buckets: int, heads: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bias = nn.Embedding(buckets, heads)

    def forward(self, seq: int, device: torch.device) -> Tensor:
        positions = torch.arange(seq, device=device)
        relative = positions[None, :] - positions[:, None]
        values: Tensor = self.bias(relative_position_bucket(relative, self.buckets))  # (seq, seq, heads)
        return values.permute(2, 0, 1).unsqueeze(0)
