"""Shared fixtures: every test gets its own segment directory under /dev/shm.

The directory is checked at teardown, so any test that leaks a segment fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path("/dev/shm") / f"camfleet-test-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(path))
    try:
        yield path
        leftovers = sorted(p.name for p in path.iterdir())
        assert leftovers == [], f"segments leaked: {leftovers}"
    finally:
        shutil.rmtree(path, ignore_errors=True)
