"""Which modules run compiled by mypyc, and the guard against a stale build.

`make compile` (nudge/tools/native.py) compiles the modules in COMPILED into extension modules
beside their sources. A source edited after its extension was built would leave the old code
running: the packages holding compiled modules call `check_fresh` when imported, which raises
`StaleBuildError` (naming the files and the command) instead.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from nudge.core.errors import StaleBuildError

ROOT = Path(__file__).resolve().parents[2]  # the checkout (or install) holding nudge/
COMPILED = (
    "nudge/state/attribution.py",
    "nudge/state/customer.py",
    "nudge/state/dedup.py",
    "nudge/state/engagement.py",
    "nudge/state/journeys.py",
    "nudge/state/parts.py",
    "nudge/state/policy.py",
    "nudge/state/shard.py",
    "nudge/state/store.py",
    "nudge/state/transitions.py",
    "nudge/state/windows.py",
    "nudge/flows/contract.py",
    "nudge/flows/fastpath.py",
    "nudge/flows/fullpath.py",
    "nudge/flows/limits.py",
    "nudge/flows/parse.py",
    "nudge/flows/route.py",
)
GROUP = "nudge._native"  # the shared library's module: inside a package, so installs find it


def extension(source: Path) -> Path | None:
    """The compiled extension that shadows `source`, if there is one for this Python."""
    for suffix in EXTENSION_SUFFIXES:
        so = source.with_suffix(suffix)
        if so.exists():
            return so
    return None


def stale(directory: Path) -> list[str]:
    """Sources in `directory` newer than the extension that shadows them."""
    out = []
    for py in sorted(directory.glob("*.py")):
        so = extension(py)
        if so is not None and py.stat().st_mtime > so.stat().st_mtime:
            out.append(str(py.relative_to(ROOT)) if py.is_relative_to(ROOT) else str(py))
    return out


def check_fresh(package_dir: str) -> None:
    """Raise StaleBuildError if a module of this package would import an outdated build."""
    old = stale(Path(package_dir))
    if old:
        raise StaleBuildError(old)


def compiled_modules() -> list[str]:
    """The modules of this process that run compiled (for logs and the benchmark report)."""
    return sorted(name for name, m in list(sys.modules.items())
                  if name.startswith("nudge.") and not name.endswith("__mypyc")
                  and str(getattr(m, "__file__", "") or "").endswith(tuple(EXTENSION_SUFFIXES)))


def built() -> bool:
    """Every module in COMPILED has an extension at least as new as its source."""
    for rel in COMPILED:
        so = extension(ROOT / rel)
        if so is None or (ROOT / rel).stat().st_mtime > so.stat().st_mtime:
            return False
    return True
