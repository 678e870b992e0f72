"""`scorer <command> [options]`: one entry point for every task the README documents.

Each command hands its options to the entry point of the package that owns the work (`scorer <command>
--help` shows that entry point's options and examples); exit codes are theirs: 0 success, 1 a failed check,
2 bad input or usage, 3 a quality floor refused the result. Imports are lazy, so `scorer serve` needs only
the serving packages (the image has no torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    summary: str
    target: str  # "module:function" taking argv
    prefix: tuple[str, ...] = ()  # argv the target needs before the user's (a subcommand of its own CLI)
    example: str = ""


COMMANDS: dict[str, Command] = {
    "serve": Command("serve the exported items over HTTP (uvicorn)", "app.__main__:main",
                     example="SCORER_ARTIFACTS=build/onnx scorer serve --port 8000"),
    "export": Command("adapters/ -> ONNX artifacts, each checked against PyTorch", "export.__main__:main",
                      example="scorer export --adapters adapters --out build/onnx --validate golden"),
    "export-rest": Command("export the other backbones beside a running service (what make serve does)",
                           "export.rest:main"),
    "add-item": Command("a new item from a scored CSV/TSV/JSONL file: train, choose, judge, export",
                        "cli.add_item:run_training_cli", ("add-item",),
                        example="scorer add-item --item photosynthesis-3 --data answers.csv --score-range 0-3"),
    "train": Command("train the committed items' adapters", "training.cli:main", ("train",),
                     example="scorer train --items all --backbone e5-multilingual"),
    "ensemble": Command("choose and write the items' ensembles", "training.cli:main", ("ensemble",)),
    "report": Command("the accuracy report (markdown and plots)", "studies.report:main"),
    "bench": Command("engine vs one full model per item vs transformers+peft", "bench.__main__:main",
                     example="scorer bench --quick"),
    "gpu-check": Command("the GPU check (a CPU smoke run where no GPU is present)", "bench.gpu:main"),
    "image-check": Command("build the CPU image, score through it, run compose", "bench.image_check:main"),
    "first-answer": Command("clone -> first scored answer, measured from a fresh clone", "bench.first_answer:main"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: scorer <command> [options]   (scorer <command> --help: its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "examples:"] + [f"  {command.example}" for command in COMMANDS.values() if command.example]
    return "\n".join(lines)


def _target(spec: str) -> Callable[[list[str]], int]:
    module, function = spec.split(":")
    found: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"scorer: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return int(_target(command.target)([*command.prefix, *args[1:]]) or 0)
    except SystemExit as exit_:  # argparse's --help and usage errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
