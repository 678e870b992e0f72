"""`python -m bench.torch_loop ROWS.json --device cuda|cpu`: the plain PyTorch loop, the GPU check's anchor.

What a user writes instead of the engine: each item's adapter merged into a full model of its own, all
resident on the device; per batch the rows are grouped by item and each group is tokenized (the backbone's
tokenizer, padded to the group's longest row, truncated as in training), copied to the device, run, mean-
pooled, classified and read back (argmax). None of the engine's trunk sharing, caching or batched heads.

ROWS.json holds [[item_id, text], ...] (the parent writes the same answers the engine gets) and the adapters
are the committed ones of those items. Prints one JSON object: answers/s at each batch size (the batch's wall
time from texts to scores on the host, device synchronised) and p99 of single answers.
It runs in its own process, in a Python that has torch (the GPU venv has none, and ORT and torch are not
timed in one process: ../shared/notes/onnxruntime.md)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (256, 32)


class TorchLoop:
    def __init__(self, items: list[str], adapters: Path, device: str) -> None:
        import torch

        from training.artifacts import adapter_model, current_record
        from training.backbones import resolve_backbone
        from training.encoder import merge_lora
        from training.tokenize import load_tokenizer

        self.torch = torch
        self.device = torch.device(device)
        self.models: dict[str, Any] = {}
        backbone = None
        for item in items:
            record = current_record(adapters, item)
            if record is None:
                raise SystemExit(f"no adapter for {item} under {adapters}")
            backbone = resolve_backbone(str(record.config["backbone"]["name"]))
            model = adapter_model(record, backbone.path)
            merge_lora(model)
            self.models[item] = model.to(self.device).eval()
        assert backbone is not None
        self.tokenizer = load_tokenizer(backbone.path, backbone.spec.max_length)
        self.tokenizer.enable_padding()

    def score(self, rows: list[tuple[str, str]]) -> list[int]:
        groups: dict[str, list[int]] = defaultdict(list)
        for index, (item, _) in enumerate(rows):
            groups[item].append(index)
        scores = [0] * len(rows)
        with self.torch.inference_mode():
            for item, indices in groups.items():
                encodings = self.tokenizer.encode_batch([rows[index][1] for index in indices])
                ids = self.torch.tensor([e.ids for e in encodings]).to(self.device, non_blocking=True)
                mask = self.torch.tensor([e.attention_mask for e in encodings]).to(self.device, non_blocking=True)
                predicted = self.models[item](ids, mask).argmax(dim=-1).cpu().tolist()  # .cpu() synchronises
                for index, score in zip(indices, predicted, strict=True):
                    scores[index] = int(score)
        return scores


def measure(loop: TorchLoop, rows: list[tuple[str, str]], singles: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    loop.score(rows[: max(BATCHES)])  # warm-up: kernels chosen, memory allocated
    for batch in BATCHES:
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            loop.score(rows[start : start + batch])
        figures[f"b{batch}"] = {"answers_per_s": round(len(rows) / (time.perf_counter() - started), 1)}
    latencies = []
    for row in rows[:singles]:
        started = time.perf_counter()
        loop.score([row])
        latencies.append(time.perf_counter() - started)
    figures["single_p99_ms"] = round(float(np.percentile(latencies, 99)) * 1e3, 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.torch_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--adapters", type=Path, default=Path("adapters"))
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    rows = [(str(item), str(text)) for item, text in json.loads(args.rows.read_text())]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    loop = TorchLoop(sorted({item for item, _ in rows}), args.adapters, args.device)
    figures = measure(loop, rows, args.singles)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(json.dumps({"device": name, "torch": torch.__version__, "rows": len(rows), **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def default_python() -> str:
    """The main venv's Python where this checkout has one (`make setup`: torch), else this one."""
    venv = Path(".venv/bin/python")
    return str(venv) if venv.is_file() else sys.executable


def run_loop(rows: list[tuple[str, str]], device: str, python: str, threads: int, singles: int) -> dict[str, Any]:
    """The loop on `rows` in a child process of `python`; its JSON figures (raises with its stderr's tail)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.json"
        path.write_text(json.dumps([list(row) for row in rows]))
        command = [python, "-m", "bench.torch_loop", str(path), "--device", device, "--singles", str(singles),
                   "--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} exited {done.returncode}: {done.stderr.strip()[-600:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**figures, "python": python}
