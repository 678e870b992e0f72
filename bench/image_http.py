"""HTTP for the image check (standard library only) and the README's examples it replays.

The README's API section shows each example as a `curl -s localhost:8000/<path> ... -d '<json>'` command
followed by its output as `# ` comment lines. The check sends the same body and compares: a printed result
object that is whole JSON must come back equal; one elided with `...` must match on every field it prints.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURL = re.compile(r"^curl -s localhost:8000(?P<path>/(?:score/[a-z0-9-]+|batch)) .*?-d '(?P<body>.*?)'$",
                  re.MULTILINE | re.DOTALL)


def call(url: str, body: Any, key: str | None, timeout: float = 60) -> tuple[int, Any]:
    """(status, parsed JSON body); connection failures are status 0."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"error": raw.decode(errors="replace")}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def wait_ready(base: str, started: float, timeout: float) -> float:
    """Seconds from `started` (perf_counter) until /health/ready answers 200."""
    while time.perf_counter() - started < timeout:
        if call(base + "/health/ready", None, None, timeout=5)[0] == 200:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise AssertionError(f"{base} not ready within {timeout} s")


@dataclass
class Example:
    path: str
    body: dict[str, Any]
    printed: str  # the output as the README prints it, comment marks removed
    answers: list[str] = field(default_factory=list)


def readme_examples(readme: Path) -> list[Example]:
    """The README's scoring examples whose output it prints."""
    text = readme.read_text()
    examples = []
    for match in CURL.finditer(text):
        body = json.loads(match["body"])
        printed: list[str] = []
        for line in text[match.end():].lstrip("\n").splitlines():
            if not line.startswith("# ") or (printed and line.startswith("# (")):
                break
            printed.append(line[2:].strip())
        if printed:
            rows = body.get("answers", [body])
            answers = [row if isinstance(row, str) else row["answer"] for row in rows]
            examples.append(Example(match["path"], body, " ".join(printed), answers))
    if len(examples) < 2:
        raise AssertionError(f"expected the README's /score and /batch examples, found {len(examples)}")
    return examples


def _printed_objects(printed: str) -> list[dict[str, Any] | str]:
    """Each printed result: parsed where it is whole JSON, else its text (elided with `...`)."""
    inner = printed[printed.index("[") + 1:] if printed.startswith('{"results"') else printed
    parts = [part for part in re.split(r"(?=\{\"(?:id|item_id)\")", inner) if part.startswith("{")]
    objects: list[dict[str, Any] | str] = []
    for part in parts:
        candidate = part.rstrip("]} ,") + "}" if printed.startswith('{"results"') else part
        try:
            objects.append(json.loads(candidate))
        except ValueError:
            objects.append(part)
    return objects


def same_result(example: Example, served: dict[str, Any]) -> None:
    """Raises unless the served response is what the README prints."""
    results = served.get("results", [served])
    printed = _printed_objects(example.printed)
    assert len(printed) == len(results), f"{example.path}: {len(results)} results, README prints {len(printed)}"
    for shown, got in zip(printed, results, strict=True):
        if isinstance(shown, dict):
            assert shown == got, f"{example.path}: served {got}, README prints {shown}"
            continue
        for key, value in re.findall(r"\"(\w+)\":(\"[^\"]*\"|null|-?[\d.]+|true|false)", shown):
            assert got.get(key) == json.loads(value), f"{example.path}: {key} is {got.get(key)!r}, README {value}"
