"""`python -m export.rest`: export every backbone not exported yet, once the service is up.

`make serve` exports the default backbone's items first and starts serving them; this runs beside it, waits
until the service is ready (so the two do not share the cores during start-up), then exports the remaining
backbones with the golden-answer check. The service (SCORER_WATCH_ARTIFACTS_S) sees the new manifest and
adds those items without a restart; `GET /items` lists them as `preparing` until then."""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.manifest import read_manifest
from export.options import ExportOptions
from export.pipeline import export_all
from export.validate import ValidationError


def wait_until_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.rest", description=__doc__)
    parser.add_argument("--adapters", default="adapters", type=Path)
    parser.add_argument("--out", default="build/onnx", type=Path)
    parser.add_argument("--after", default=None, help="readiness URL to wait for before exporting")
    parser.add_argument("--wait-s", type=float, default=900)
    args = parser.parse_args(argv)
    if args.after and not wait_until_ready(args.after, args.wait_s):
        print(f"{args.after} never became ready; exporting anyway", flush=True)
    manifest = read_manifest(args.out) if (args.out / "manifest.json").is_file() else {}
    pending = manifest.get("pending", {})
    # The first stage of `make serve` leaves the evidence indexes out (the first answer does not wait for them).
    unexplained = sorted(item_id for item_id, entry in manifest.get("items", {}).items() if not entry.get("evidence"))
    if not pending and not unexplained:
        print("every item is exported already", flush=True)
        return 0
    print(f"exporting {len(pending)} more items ({', '.join(sorted(pending))}) and the evidence of "
          f"{len(unexplained)}", flush=True)
    started = time.perf_counter()
    try:
        manifest = export_all(ExportOptions(args.adapters, args.out, validate="golden",
                                            log=lambda line: print(line, flush=True)))
    except (ValidationError, FileNotFoundError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"{len(manifest['items'])} items exported in {time.perf_counter() - started:.1f} s; "
          f"the service adds them within seconds", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
