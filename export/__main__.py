"""`python -m export`: adapters/ -> ONNX artifacts (incremental, validated)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.manifest import single_entry
from export.pipeline import ExportOptions, export_all
from export.validate import ValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--adapters", default="adapters", type=Path)
    parser.add_argument("--out", default="build/onnx", type=Path)
    parser.add_argument("--head-format", choices=["ort-adapter", "merged"], default="ort-adapter")
    parser.add_argument("--precision", choices=["fp32", "int8", "fp16"], nargs="+", default=["fp32"],
                        help="int8 (CPU) / fp16 (GPU): also build that trunk and measure its QWK change per item")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", default=None,
                        help="comma-separated backbone names to export (default: every backbone with adapters); "
                             "the others keep what was exported before")
    parser.add_argument("--validate", choices=["full", "golden"], default="full",
                        help="full: every validation and test answer against PyTorch (default); golden: only each "
                             "item's golden answers (seconds per item; what `make serve` uses)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="also build the fused trunk (ORT transformer fusions), served where it validates")
    parser.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=True,
                        help="also build the batched head graph (every item's rows in one run; served on CUDA)")
    parser.add_argument("--evidence", action=argparse.BooleanOptionalAction, default=True,
                        help="also build each item's evidence index (its training answers in its head's features; "
                             "`explain` on the API) where the item's data is at hand; --no-evidence builds none "
                             "(indexes built before for the same heads are kept)")
    parser.add_argument("--evidence-texts", action="store_true",
                        help="store the evidence answers' texts too (student answers: personal data; default ids "
                             "and scores only)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        backbones = tuple(args.backbones.split(",")) if args.backbones else None
        manifest = export_all(ExportOptions(args.adapters, args.out, args.head_format, "int8" in args.precision,
                                            args.threads, backbones=backbones, fp16="fp16" in args.precision,
                                            validate=args.validate, fused=args.fused,
                                            grouped=args.grouped, evidence=args.evidence,
                                            evidence_texts=args.evidence_texts))
    except (ValidationError, FileNotFoundError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    # An ensemble item's heads are its members' own entries (its first under "fast"): each checked alone.
    worst = max((single_entry(entry)["max_abs_logit_diff"] for entry in manifest["items"].values()), default=0.0)
    print(f"exported {len(manifest['items'])} items to {args.out} in {time.perf_counter() - started:.1f} s; "
          f"max |ONNX - PyTorch| logit diff {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
