"""The per-event path compiled with mypyc, and the guard against a stale build.

`make compile` (`python -m nudge.native build`) compiles the modules in COMPILED with mypyc
into extension modules beside their sources (one shared library, `nudge/_native__mypyc`).
Python imports an extension ahead of the `.py` of the same name, so nothing else changes: the
code is the same code, its type annotations checked at run time, and the decisions, records
and emails are byte-identical to pure Python's (`make test` runs the unit tests and doctests on
pure Python first, then the whole suite compiled). The shard's batch runs about 1.5x faster
(README, Performance). `make pure` removes the extensions; without a C compiler, Nudge simply
runs as pure Python.

What is compiled is the code every event runs through after parsing: the shard, the
customer record and its windows, the journeys and policies, de-duplication, engagement and
attribution, and the router. Code that mostly calls into C already (orjson, Jinja2, River,
confluent-kafka) would gain little.

A source edited after its extension was built would leave the old code running. The
packages holding compiled modules call `check_fresh` when imported, which raises
`StaleBuildError` (naming the files and the command) instead.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from nudge.errors import StaleBuildError

ROOT = Path(__file__).resolve().parent.parent
COMPILED = (
    "state/attribution.py",
    "state/customer.py",
    "state/dedup.py",
    "state/engagement.py",
    "state/journeys.py",
    "state/policy.py",
    "state/shard.py",
    "state/store.py",
    "state/transitions.py",
    "state/windows.py",
    "flows/contract.py",
    "flows/parse.py",
    "flows/route.py",
)
PACKAGES = ("nudge", "sources", "flows", "state", "scoring", "templates", "delivery")
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
                  if name.split(".")[0] in PACKAGES and not name.endswith("__mypyc")
                  and str(getattr(m, "__file__", "") or "").endswith(tuple(EXTENSION_SUFFIXES)))


def built() -> bool:
    """Every module in COMPILED has an extension at least as new as its source."""
    for rel in COMPILED:
        so = extension(ROOT / rel)
        if so is None or (ROOT / rel).stat().st_mtime > so.stat().st_mtime:
            return False
    return True


def remove() -> list[Path]:
    """Delete every extension built here (`make pure`)."""
    gone = []
    for directory in PACKAGES:
        for suffix in EXTENSION_SUFFIXES:
            for so in (ROOT / directory).glob(f"*{suffix}"):
                so.unlink()
                gone.append(so)
    return gone


def build() -> None:
    """Compile COMPILED in place, unless the build is already current."""
    if built():
        print("nudge.native: compiled modules are up to date")
        return
    import os

    from mypyc.build import mypycify
    from setuptools import setup

    remove()  # a module dropped from COMPILED must not keep shadowing its source
    os.chdir(ROOT)
    # River, narwhals and NumPy are typed but irrelevant to the compiled code; following
    # them costs mypyc minutes (see [tool.mypy] in pyproject.toml).
    extensions = mypycify(list(COMPILED), opt_level="3", group_name=GROUP,
                          target_dir="build/mypyc")
    setup(name="nudge-native", ext_modules=extensions,
          script_args=["build_ext", "--inplace", "--build-temp", "build/mypyc/temp",
                       "--build-lib", "build/mypyc/lib"])
    # An unchanged C file is not relinked, and its copy keeps the old time: mark it current.
    for rel in COMPILED:
        so = extension(ROOT / rel)
        if so is None:
            raise SystemExit(f"nudge.native: {rel} was not compiled")
        os.utime(so)
    print(f"nudge.native: compiled {len(COMPILED)} modules")


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        build()
    elif argv == ["remove"]:
        print(f"nudge.native: removed {len(remove())} extension files")
    elif argv == ["status"]:
        print("compiled and current" if built() else "pure Python (or a stale build)")
    else:
        print("usage: python -m nudge.native build|remove|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
