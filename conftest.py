"""Test-session hooks for the compiled build (nudge/tools/native.py).

A module compiled by mypyc has no Python source to import for its doctests: `make test` runs
those on pure Python first, then the whole suite on the compiled build.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nudge.core import compiled as native


def pytest_report_header(config: pytest.Config) -> str:
    mode = "compiled with mypyc" if native.built() else "pure Python"
    return f"nudge: {mode} ({len(native.COMPILED)} modules in nudge/core/compiled.py)"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix == ".py" and native.extension(collection_path) is not None:
        return True  # the extension shadows it: its doctests ran on the pure-Python pass
    return None
