"""One resident trunk per backbone (session, tokenizer, shared head graph), shared by all its items."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from app.errors import ItemUnavailable
from app.settings import Settings
from core.grouped_head import GroupedHeads
from core.manifest import Artifacts, BackboneFiles, ItemSpec, Member
from core.onnx_runtime import TextEncoder, load_session

log = logging.getLogger("scorer.engine")


@dataclass
class Trunk:
    files: BackboneFiles
    session: ort.InferenceSession
    encoder: TextEncoder
    shared_head: ort.InferenceSession | None
    grouped: GroupedHeads | None  # the batched head graph, where exported and chosen (Settings.grouped_heads)
    path: Path  # the graph it runs: plain, fused or reduced

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def keep_states_on(self) -> str | None:
        """IO binding: the device its output stays on for the batched graph (which binds there)."""
        return self.grouped.bind_on if self.grouped is not None else None

    @property
    def fp32(self) -> bool:
        """Golden answers are compared exactly only on an fp32 trunk (plain or fused)."""
        return self.path in (self.files.trunk_path, self.files.fused_path)


def load_trunk(files: BackboneFiles, settings: Settings, threads: int, device: str) -> Trunk:
    precision = settings.precision
    # fp32: the fused graph where the export validated it and the device gains from it (Settings.fused_trunk).
    fused = settings.fused_trunk == "on" or (settings.fused_trunk == "auto" and device == "cuda")
    path = files.fused_path if fused and files.fused_path else files.trunk_path
    # auto: the reduced trunk made for this device (int8 on CPU, fp16 on CUDA) where the manifest allows it.
    reduced, variant = (files.int8_path, "int8") if device == "cpu" else (files.fp16_path, "fp16")
    if precision in ("int8", "fp16") and precision != variant:
        raise RuntimeError(f"SCORER_PRECISION={precision} is not for device {device} (int8: cpu, fp16: cuda)")
    if precision in (variant, "auto") and reduced is not None:
        path = reduced
    elif precision == variant:
        raise RuntimeError(f"SCORER_PRECISION={precision} but the manifest does not allow the {precision} trunk "
                           f"of {files.name} (its measured QWK drop is too large, or it was not exported)")
    session = load_session(path, threads, arena=True, device=device)
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("CUDA was asked for but the trunk session fell back to the CPU "
                           "(CUDA/cuDNN libraries missing?)")
    use_grouped = settings.grouped_heads == "on" or (settings.grouped_heads == "auto" and device == "cuda")
    bound = settings.io_binding == "on" or (settings.io_binding == "auto" and device == "cuda")
    batched = (GroupedHeads(files.grouped_head_path, threads, device, bind_on=device if bound else None)
               if use_grouped and files.grouped_head_path else None)
    # The per-item head graph only where the batched one does not serve the adapter heads; int8 beside the
    # int8 trunk, where the export made one (its QWK change was measured with both together).
    head_path = files.int8_head_path if path == files.int8_path and files.int8_head_path else files.adapter_head_path
    head = (load_session(head_path, threads, arena=False, device=device)
            if head_path and batched is None else None)
    log.info("trunk %s (%s) on %s, %s heads%s", files.name, path.name, device, "batched" if batched else "per-item",
             ", IO-bound" if batched is not None and batched.bind_on else "")
    return Trunk(files, session, TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix), head,
                 batched, path)


def load_trunks(artifacts: Artifacts, settings: Settings, threads: int, device: str) -> dict[str, Trunk]:
    """Only backbones that some item uses: an exported but unused trunk costs no memory."""
    used = {name for spec in artifacts.items.values() for name in spec.backbones}
    return {name: load_trunk(files, settings, threads, device)
            for name, files in artifacts.backbones.items() if name in used or len(artifacts.backbones) == 1}


def trunk_for(spec: ItemSpec, trunks: dict[str, Trunk]) -> Trunk:
    """The trunk of the item's first member."""
    return member_trunk(spec.item_id, spec.serving_members[0], trunks)


def require_trunks(spec: ItemSpec, trunks: dict[str, Trunk]) -> None:
    """Raises the item's error unless every member on a trunk has its own trunk here."""
    for member in spec.serving_members:
        if member.on_trunk:
            member_trunk(spec.item_id, member, trunks)


def member_trunk(item_id: str, member: Member, trunks: dict[str, Trunk]) -> Trunk:
    """The trunk a member was trained with, or a clear refusal: a head never runs on another backbone, and an
    ensemble item with a member whose trunk is missing is unavailable, never served by fewer members."""
    trunk = trunks.get(member.backbone)
    if trunk is None:
        raise ItemUnavailable(f"item {item_id!r} was trained on backbone {member.backbone!r}, which this "
                              f"deployment does not serve (trunks: {sorted(trunks)})")
    if member.backbone_sha256 and member.backbone_sha256 != trunk.files.weights_sha256:
        raise ItemUnavailable(f"item {item_id!r} was trained on {member.backbone} weights "
                              f"{member.backbone_sha256[:12]}…, but the loaded {member.backbone} trunk has "
                              f"{trunk.files.weights_sha256[:12]}…; re-export it")
    return trunk
