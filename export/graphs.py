"""torch modules in the exact shape of the ONNX graphs, and their export."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.encoder import Head, LoRALinear, ScoringModel, Trunk, attention_bias, mean_pool

OPSET = 17
TRUNK_INPUTS = ["input_ids", "attention_mask"]
HEAD_INPUTS = ["hidden_states", "attention_mask"]
# Every head graph also hands out its pooled features (what its classifier reads): the item's own
# representation of an answer, in which the evidence index (core/evidence.py) finds alike training answers.
# An output a run does not ask for costs nothing: it is an intermediate the classifier needs anyway.
HEAD_OUTPUTS = ["logits", "pooled"]
# MPNet's relative-position attention bias: every head graph computes it from the sequence length with the
# backbone's frozen bucket table (32 x heads floats, a constant of the graph), as the trunk graph does for its
# layers. It depends on nothing else, so the head interface (hidden_states, attention_mask) stays the same for
# every backbone, runner and cache; handing it over from the trunk as a (heads, seq, seq) input instead would
# add a tensor larger than the hidden states at short lengths to every head run and to the batched graph.


def adapter_input_names(head: Head) -> list[str]:
    """Names of the per-item tensors of the shared adapter head graph, in a fixed order."""
    return [name for name, _ in _adapter_params(head)]


def _adapter_params(head: Head) -> list[tuple[str, Tensor]]:
    params: list[tuple[str, Tensor]] = []
    for name, module in head.named_modules():
        if isinstance(module, LoRALinear):
            params += [(f"{name}.lora_a", module.lora_a), (f"{name}.lora_b", module.lora_b)]
    params += [("classifier.weight", head.classifier.weight), ("classifier.bias", head.classifier.bias)]
    return params


class _InputLoRA(nn.Module):
    """A frozen linear whose LoRA A/B come from graph inputs (looked up per forward)."""

    def __init__(self, lora: LoRALinear, name: str, tensors: dict[str, Tensor]) -> None:
        super().__init__()
        self.base = lora.base
        self.scale = lora.scale
        self.name = name
        self.tensors = tensors

    def forward(self, x: Tensor) -> Tensor:
        lora_a, lora_b = self.tensors[f"{self.name}.lora_a"], self.tensors[f"{self.name}.lora_b"]
        return self.base(x) + F.linear(F.linear(x, lora_a), lora_b) * self.scale


def _input_lora_layers(head: Head, kind: type[_InputLoRA], tensors: dict[str, Tensor]) -> nn.ModuleList:
    """A copy of the head's layers with every LoRALinear replaced by `kind`, reading `tensors` per forward."""
    layers = copy.deepcopy(head.layers)
    for layer_name, module in list(layers.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                full = f"layers.{layer_name}.{child_name}" if layer_name else f"layers.{child_name}"
                setattr(module, child_name, kind(child, full, tensors))
    return layers


class AdapterHead(nn.Module):
    """The head with its LoRA A/B and classifier taken from inputs, so one graph serves every item."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.names = adapter_input_names(head)
        self.tensors: dict[str, Tensor] = {}
        self.layers = _input_lora_layers(head, _InputLoRA, self.tensors)
        self.position_bias = head.position_bias  # MPNet's, frozen: see attention_bias below

    def forward(self, hidden_states: Tensor, attention_mask: Tensor, *item_tensors: Tensor) -> tuple[Tensor, Tensor]:
        self.tensors.clear()
        self.tensors.update(zip(self.names, item_tensors, strict=True))
        bias = attention_bias(attention_mask, hidden_states.dtype, self.position_bias)
        for layer in self.layers:
            hidden_states = layer(hidden_states, bias)
        pooled = mean_pool(hidden_states, attention_mask)
        return F.linear(pooled, self.tensors["classifier.weight"], self.tensors["classifier.bias"]), pooled


class PooledHead(nn.Module):
    """A (merged) head that returns its pooled features beside the logits (HEAD_OUTPUTS)."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        bias = attention_bias(attention_mask, hidden_states.dtype, self.head.position_bias)
        for layer in self.head.layers:
            hidden_states = layer(hidden_states, bias)
        pooled = mean_pool(hidden_states, attention_mask)
        return self.head.classifier(pooled), pooled


class _GroupedLoRA(_InputLoRA):
    """A frozen linear whose LoRA A/B are per-row: each row gathers its item's slot of a stacked table."""

    def forward(self, x: Tensor) -> Tensor:
        slots = self.tensors["row_slot"]
        lora_a = self.tensors[f"{self.name}.lora_a"][slots]  # (rows, r, in)
        lora_b = self.tensors[f"{self.name}.lora_b"][slots]  # (rows, out, r)
        delta = torch.matmul(torch.matmul(x, lora_a.transpose(1, 2)), lora_b.transpose(1, 2))
        return self.base(x) + delta * self.scale


class GroupedHead(nn.Module):
    """Every item of a mixed batch in one run (as Punica/S-LoRA batch LoRA adapters): the per-item tensors
    come stacked over the batch's items (slots), and each row names its slot. The shared weights then run
    as one large GEMM instead of one small GEMM per item, and the runtime makes one session run per batch
    instead of one per item (27 per mixed batch on the GPU, where per-run overhead dominated)."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.names = adapter_input_names(head)
        self.tensors: dict[str, Tensor] = {}
        self.layers = _input_lora_layers(head, _GroupedLoRA, self.tensors)
        self.position_bias = head.position_bias

    def forward(self, hidden_states: Tensor, attention_mask: Tensor, row_slot: Tensor,
                *tables: Tensor) -> tuple[Tensor, Tensor]:
        self.tensors.clear()
        self.tensors.update(zip(self.names, tables, strict=True))
        self.tensors["row_slot"] = row_slot
        bias = attention_bias(attention_mask, hidden_states.dtype, self.position_bias)
        for layer in self.layers:
            hidden_states = layer(hidden_states, bias)
        pooled = mean_pool(hidden_states, attention_mask)  # (rows, hidden)
        weight = self.tensors["classifier.weight"][row_slot]  # (rows, labels, hidden)
        logits = torch.matmul(weight, pooled.unsqueeze(-1)).squeeze(-1)
        return logits + self.tensors["classifier.bias"][row_slot], pooled


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # TorchScript export: 5x faster than dynamo here and it keeps parameter names.
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=_outputs(module),
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def _outputs(module: nn.Module) -> list[str]:
    return ["hidden_states"] if isinstance(module, Trunk) else HEAD_OUTPUTS


def _sample(hidden: int) -> tuple[Tensor, Tensor, Tensor]:
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    return ids, mask, torch.randn(2, ids.shape[1], hidden)


def export_trunk(model: ScoringModel, path: Path) -> None:
    ids, mask, _ = _sample(model.trunk.embeddings.word.embedding_dim)
    seq = {0: "batch", 1: "seq"}
    _export(model.trunk, (ids, mask), path, TRUNK_INPUTS,
            {"input_ids": seq, "attention_mask": seq, "hidden_states": {0: "batch", 1: "seq"}})


def export_merged_head(model: ScoringModel, path: Path) -> None:
    """model's LoRA must already be merged (training.encoder.merge_lora)."""
    _, mask, hidden = _sample(model.trunk.embeddings.word.embedding_dim)
    seq = {0: "batch", 1: "seq"}
    _export(PooledHead(model.head), (hidden, mask), path, HEAD_INPUTS,
            {"hidden_states": seq, "attention_mask": seq, "logits": {0: "batch"}, "pooled": {0: "batch"}})


def export_adapter_head(model: ScoringModel, path: Path) -> list[str]:
    """The shared head graph; returns the names of its per-item inputs."""
    wrapper = AdapterHead(model.head)
    _, mask, hidden = _sample(model.trunk.embeddings.word.embedding_dim)
    tensors = tuple(param.detach().clone() for _, param in _adapter_params(model.head))
    seq = {0: "batch", 1: "seq"}
    dynamic: dict[str, dict[int, str]] = {"hidden_states": seq, "attention_mask": seq, "logits": {0: "batch"}}
    # Score ranges differ by item: the classifier's label dimension is symbolic.
    dynamic["classifier.weight"] = {0: "labels"}
    dynamic["classifier.bias"] = {0: "labels"}
    dynamic["logits"] = {0: "batch", 1: "labels"}
    dynamic["pooled"] = {0: "batch"}
    _export(wrapper, (hidden, mask, *tensors), path, HEAD_INPUTS + wrapper.names, dynamic)
    _make_overridable(path, dict(zip(wrapper.names, tensors, strict=True)))
    return wrapper.names


def export_grouped_head(model: ScoringModel, path: Path) -> list[str]:
    """The batched head graph (GroupedHead); inputs: hidden_states, attention_mask, row_slot, then every
    per-item tensor stacked over slots, named as in the adapter head graph. Returns those names."""
    wrapper = GroupedHead(model.head)
    _, mask, hidden = _sample(model.trunk.embeddings.word.embedding_dim)
    params = [param.detach().clone() for _, param in _adapter_params(model.head)]
    tables = tuple(torch.stack([param, param * 0.5]) for param in params)  # two slots in the sample
    row_slot = torch.tensor([1, 0])
    seq = {0: "batch", 1: "seq"}
    dynamic: dict[str, dict[int, str]] = {"hidden_states": seq, "attention_mask": seq, "row_slot": {0: "batch"},
                                          "logits": {0: "batch", 1: "labels"}, "pooled": {0: "batch"}}
    for name in wrapper.names:
        dynamic[name] = {0: "slots", 1: "labels"} if name.startswith("classifier.") else {0: "slots"}
    _export(wrapper, (hidden, mask, row_slot, *tables), path, [*HEAD_INPUTS, "row_slot", *wrapper.names], dynamic)
    return wrapper.names


def _make_overridable(path: Path, defaults: dict[str, Tensor]) -> None:
    """Give each per-item input a default initializer of the same name.

    ORT feeds .onnx_adapter tensors only to such overridable initializers; plain graph inputs would be
    demanded in every run's feed dict."""
    import onnx
    from onnx import numpy_helper

    graph_model = onnx.load(str(path))
    for name, value in defaults.items():
        graph_model.graph.initializer.append(numpy_helper.from_array(value.numpy(), name))
    onnx.save(graph_model, str(path))
