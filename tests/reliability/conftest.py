"""Reliability fixtures: the load length, and the results table every scenario adds its row to."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.reliability.report import ResultsTable

# CI size by default; RELIABILITY_LOAD_S=60 for the full-length run the issue describes.
LOAD_S = float(os.environ.get("RELIABILITY_LOAD_S", "12"))


@pytest.fixture(scope="session")
def load_s() -> float:
    return LOAD_S


@pytest.fixture(scope="session")
def results_table() -> Iterator[ResultsTable]:
    table = ResultsTable(LOAD_S)
    yield table
    table.write()

