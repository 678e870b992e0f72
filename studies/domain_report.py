"""`python -m studies.domain_report`: what domain adaptation gave, as reports/domain.md.

Reads the committed update's record (adapters/backbones/<name>/domain.json: held-out masked-token loss
before and after, time) and the items retrained on the adapted backbone into a separate adapters folder
(`python -m training train --backbone minilm-en-asap --items all --adapters runs/domain-pilot`), compared on
validation QWK (what would choose) with the same items' committed adapters on the plain backbone, same recipe
and seed. Test QWK is reported beside, never used."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studies.pilot_study import mean_change, pilot_rows
from training.domain import FULL_LEARNING_RATE

REPO = Path(__file__).resolve().parents[1]


def write(name: str, pilot: Path, adapters: Path, out: Path) -> Path:
    record = json.loads((adapters / "backbones" / name / "domain.json").read_text())
    full_path = adapters / "backbones" / f"{name}-full" / "domain.json"
    full = json.loads(full_path.read_text()) if full_path.is_file() else None
    rows = pilot_rows(pilot, adapters)
    (out / "domain.json").write_text(json.dumps({"update": record, "full_update": full, "pilot": rows},
                                                indent=2, sort_keys=True) + "\n")
    loss, config = record["held_out_loss"], record["config"]
    delta_bytes = (adapters / "backbones" / name / "delta.safetensors").stat().st_size
    lines = [f"# Domain adaptation: {name}", "",
             f"Masked-language-model training of {config['base']} on {record['answers']:,} ASAP training answers "
             f"(never validation or test answers), {config['epochs']} epochs, batch {config['batch_size']}, "
             f"lr {config['learning_rate']}, warm-up {config['warmup_share']:.0%}, clipping {config['clip']}, as a "
             f"rank-{config['rank']} update of every linear module of every layer "
             f"({delta_bytes / 1e6:.1f} MB committed; merged into the packaged weights on set-up). "
             f"Training took {record['train_seconds'] / 60:.1f} min on 2 CPU cores.", "",
             f"Held-out masked-token loss on the {record['held_out_answers']:,} validation answers: "
             f"{loss['before']:.3f} before (the packaged sentence-embedding checkpoint has no MLM head: the fresh "
             f"head's loss), **{loss['after']:.3f}** after."]
    if full is not None:
        low_rank, every = loss["after"], full["held_out_loss"]["after"]
        verdict = ("the low-rank form loses nothing against it" if low_rank <= every else
                   f"the low-rank form loses {low_rank - every:.3f} against it")
        lines += ["", f"The same training updating every weight instead (`--full`, the paper's learning rate "
                      f"{FULL_LEARNING_RATE:g}, not committed): "
                      f"{full['held_out_loss']['before']:.3f} → {every:.3f} in {full['train_seconds'] / 60:.1f} "
                      f"min — {verdict} ({low_rank:.3f} vs {every:.3f} held-out loss)."]
    lines += ["", "Items retrained on the adapted backbone (same recipe and seed as the committed ones; validation "
                  "QWK at the best epoch, what chooses):", "",
              "| item | validation QWK plain | adapted | test QWK plain | adapted |", "|---|---:|---:|---:|---:|",
              *[f"| {r['item']} | {r['validation_plain']:.3f} | {r['validation_adapted']:.3f} | "
                f"{r['test_plain']:.3f} | {r['test_adapted']:.3f} |" for r in rows]]
    if rows:
        gain = mean_change(rows, "validation")
        better = sum(row["validation_adapted"] > row["validation_plain"] for row in rows)
        verdict = ("validation prefers the adapted backbone: retrain every item on it" if gain > 0 else
                   f"validation does not prefer the adapted backbone (better on {better} of {len(rows)} items, "
                   "worse on average), so the items stay on minilm-en; test answers choose nothing. Whether its "
                   "adapters help as extra ensemble members: `python -m studies.member_study` (accuracy report)")
        lines += ["", f"Mean over {len(rows)} items: validation QWK change {gain:+.3f}, test "
                      f"{mean_change(rows, 'test'):+.3f}: {verdict}."]
    path = out / "domain.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.domain_report", description=__doc__)
    parser.add_argument("--name", default="minilm-en-asap")
    parser.add_argument("--pilot", default=str(REPO / "runs" / "domain-pilot"), type=Path)
    parser.add_argument("--adapters", default=str(REPO / "adapters"), type=Path)
    parser.add_argument("--out", default=str(REPO / "reports"), type=Path)
    args = parser.parse_args(argv)
    print(f"wrote {write(args.name, args.pilot, args.adapters, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
