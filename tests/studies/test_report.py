from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.report import write_report
from training.asap import HUMAN_QWK
from training.metrics import fisher_z_mean

ADAPTER_QWK = {"asap-01": 0.812, "asap-02": 0.654}
FULL_QWK = {"asap-01": 0.791}


def _split(qwk: float, size: int) -> dict[str, Any]:
    return {"qwk": qwk, "qwk_argmax": qwk - 0.01, "accuracy": 0.7, "macro_f1": 0.68,
            "confusion": [[5, 1, 0], [1, 4, 1], [0, 1, 3]], "n": size}


def _curve() -> list[dict[str, float]]:
    return [{"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch, "val_qwk": 0.5 + 0.1 * epoch,
             "seconds": 3.0} for epoch in (1, 2, 3)]


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _adapters(root: Path) -> Path:
    items = {}
    for item_id, qwk in ADAPTER_QWK.items():
        items[item_id] = {"current": "v1", "versions": ["v1"], "score_range": {"low": 0, "high": 2},
                          "backbone": "minilm-en", "test_qwk": qwk}
        _write(root / item_id / "v1" / "metrics.json", {
            "test": _split(qwk, 16), "validation": _split(qwk + 0.02, 8),
            "sizes": {"train": 120, "validation": 8, "test": 16}, "best_epoch": 3, "curve": _curve(),
            "seconds": {"trunk_cache": 2.0, "train": 40.0, "evaluate": 1.0, "total": 43.0},
            # asap-02 leaves human_qwk out so the report falls back to training.asap.HUMAN_QWK
            "human_qwk": 0.9 if item_id == "asap-01" else None, "trainable_parameters": 1000,
        })
        _write(root / item_id / "v1" / "config.json", {
            "split_layer": 3, "decoding": {"thresholds": None},
            "train": {"targets": "all-linear", "rank": 8, "alpha": 16.0, "learning_rate": 0.002,
                      "max_epochs": 8},
        })
    _write(root / "manifest.json", {"format": 1, "items": items})
    return root


def test_report_markdown_and_plots(tmp_path: Path) -> None:
    full_dir, out = tmp_path / "full_ft", tmp_path / "reports"
    for item_id, qwk in FULL_QWK.items():
        _write(full_dir / f"{item_id}.json", {"test": _split(qwk, 16), "validation": _split(qwk, 8),
                                              "curve": _curve(), "seconds": {"train": 300.0, "total": 310.0},
                                              "best_epoch": 2})
    _write(out / "sweep.json", {"asap-01|S=0|all-linear|lr=2e-3": {"val_qwk": 0.777, "val_qwk_argmax": 0.76,
                                                                    "best_epoch": 4, "seconds": 50.0}})
    decoders = ("tuned", "argmax", "fixed", "bagged", "cv-pick")
    _write(out / "decoding.json", {
        "asap-01": {"test_qwk": dict(zip(decoders, (0.80, 0.70, 0.75, 0.79, 0.80), strict=True)), "cv_pick": "tuned"},
        "asap-02": {"test_qwk": dict(zip(decoders, (0.60, 0.64, 0.65, 0.61, 0.64), strict=True)), "cv_pick": "argmax"},
    })

    markdown = write_report(_adapters(tmp_path / "adapters"), full_dir, out).read_text()

    lines = markdown.splitlines()
    row_01 = next(line for line in lines if line.startswith("| asap-01 |"))
    row_02 = next(line for line in lines if line.startswith("| asap-02 |"))
    assert "| 0.812 |" in row_01 and "| 0.791 |" in row_01 and "| 0.900 |" in row_01
    assert "| 0.654 |" in row_02 and "| – |" in row_02 and f"| {HUMAN_QWK['asap-02']:.3f} |" in row_02
    adapter_mean = sum(ADAPTER_QWK.values()) / len(ADAPTER_QWK)
    means = next(line for line in lines if line.startswith("| LoRA adapters |"))
    assert f"| {adapter_mean:.3f} |" in means
    assert f"| {fisher_z_mean(list(ADAPTER_QWK.values())):.3f} |" in means
    assert "Too few items" in markdown and "(1;" in markdown
    assert "S = 3, targets all-linear, rank 8" in markdown and "| 0.777 |" in markdown
    assert "scorer report" in markdown
    decoding_mean = next(line for line in lines if line.startswith("| mean |"))
    assert decoding_mean == "| mean | 0.700 | 0.670 | 0.700 | 0.700 | 0.720 | – |"
    for name in ("qwk_per_item.png", "training_curves.png", "confusion_matrices.png"):
        assert (out / name).stat().st_size > 0


def test_report_has_a_column_per_further_backbone(tmp_path: Path) -> None:
    adapters = _adapters(tmp_path / "adapters")
    manifest = json.loads((adapters / "manifest.json").read_text())
    manifest["items"]["asap-01-e5"] = {**manifest["items"]["asap-01"], "backbone": "e5-multilingual",
                                       "test_qwk": 0.845}
    (adapters / "manifest.json").write_text(json.dumps(manifest))
    _write(adapters / "asap-01-e5" / "v1" / "metrics.json", {
        **json.loads((adapters / "asap-01" / "v1" / "metrics.json").read_text()),
        "test": _split(0.845, 16), "seconds": {"trunk_cache": 9.0, "train": 95.0, "evaluate": 3.0, "total": 107.0}})
    _write(adapters / "asap-01-e5" / "v1" / "config.json", {
        **json.loads((adapters / "asap-01" / "v1" / "config.json").read_text()), "split_layer": 9,
        "source_item": "asap-01"})

    markdown = write_report(adapters, tmp_path / "full_ft", tmp_path / "reports").read_text()

    lines = markdown.splitlines()
    assert not any(line.startswith("| asap-01-e5 |") for line in lines)  # a column, not a row
    header = next(line for line in lines if line.startswith("| item |"))
    assert "e5-multilingual QWK" in header and "e5-multilingual train s" in header
    row_01 = next(line for line in lines if line.startswith("| asap-01 |"))
    row_02 = next(line for line in lines if line.startswith("| asap-02 |"))
    assert row_01.endswith("| 0.845 | 95 |") and row_02.endswith("| – | – |")
    assert "mean test-QWK difference (e5-multilingual − minilm-en) +0.033" in markdown
    assert "e5-multilingual: S = 9" in markdown and "e5-multilingual (1 items): training 95 s" in markdown


def test_an_extra_member_of_the_default_backbone_is_a_column_not_an_item(tmp_path: Path) -> None:
    adapters = _adapters(tmp_path / "adapters")
    manifest = json.loads((adapters / "manifest.json").read_text())
    manifest["items"]["asap-01-r2"] = dict(manifest["items"]["asap-01"])  # same backbone: minilm-en
    (adapters / "manifest.json").write_text(json.dumps(manifest))
    own = json.loads((adapters / "asap-01" / "v1" / "metrics.json").read_text())
    _write(adapters / "asap-01-r2" / "v1" / "metrics.json", {
        **own, "test": _split(own["test"]["qwk"] - 0.02, 16),
        "validation": {**own["validation"], "qwk": own["validation"]["qwk"] + 0.04}})
    _write(adapters / "asap-01-r2" / "v1" / "config.json", {
        **json.loads((adapters / "asap-01" / "v1" / "config.json").read_text()), "source_item": "asap-01",
        "member_tag": "r2"})

    markdown = write_report(adapters, tmp_path / "full_ft", tmp_path / "reports").read_text()

    assert not any(line.startswith("| asap-01-r2 |") for line in markdown.splitlines())
    assert "minilm-en/r2 QWK" in markdown and "trained on both raters' scores" in markdown
    assert "mean validation-QWK difference +0.040; mean test-QWK difference (minilm-en/r2 − minilm-en) -0.020" \
        in markdown


def test_tier_and_evidence_sections_show_the_bench_files(tmp_path: Path) -> None:
    import json

    from studies.report_tiers import evidence_section, tiers_section

    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    tiers = json.loads((results / "tiers.json").read_text())["tiers"]
    text = "\n".join(tiers_section(results))
    assert all(f"**{tiers[name]['mean_qwk']:.3f}**" in text for name in ("fast", "balanced", "accurate"))
    evidence = json.loads((results / "evidence.json").read_text())
    assert f"**{evidence['mean']['qwk_neighbours']:.3f}**" in "\n".join(evidence_section(results))
    assert tiers_section(tmp_path) == [] and evidence_section(tmp_path) == []  # no bench files: no section


def test_the_outlook_reads_its_figures_from_the_committed_results(tmp_path: Path) -> None:
    """The summary of the 0.80 aim: the accurate tier's shortfall, the pooled kinds' spread and the MPNet
    member's gap come from the committed files; moving one of them moves the text."""
    import shutil

    from studies.report_data import load_items
    from studies.report_outlook import outlook_section

    repo = Path(__file__).resolve().parents[2]
    items = load_items(repo / "adapters", repo / "reports" / "full_ft")
    text = "\n".join(outlook_section(items, repo / "reports", repo / "bench" / "results"))
    accurate = json.loads((repo / "bench" / "results" / "tiers.json").read_text())["tiers"]["accurate"]["mean_qwk"]
    assert f"accurate {accurate:.3f}" in text and f"{0.80 - accurate:.3f} short" in text
    gap = json.loads((repo / "reports" / "ensemble_choice_mpnet.json").read_text())["max_trunks=2"]
    assert f"{gap['kinds'][gap['served']]['gap_to_best']:+.4f}" in text

    results = tmp_path / "results"
    results.mkdir()
    tiers = json.loads((repo / "bench" / "results" / "tiers.json").read_text())
    tiers["tiers"]["accurate"]["mean_qwk"] = 0.812
    (results / "tiers.json").write_text(json.dumps(tiers))
    shutil.copy(repo / "reports" / "ensemble_choice.json", tmp_path / "ensemble_choice.json")
    moved = "\n".join(outlook_section(items, tmp_path, results))
    assert "accurate 0.812" in moved and "MPNet-base on both raters" in moved and "mpnet_all_items" not in moved
    assert outlook_section(items, tmp_path / "none", results) == []  # no choice file: no section
