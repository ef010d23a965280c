"""Build (or remove) the per-event path compiled with mypyc.

`make compile` (`python -m nudge.tools.native build`) compiles the modules in COMPILED with mypyc
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

Which modules are compiled, and the guard that refuses a stale build, live in
nudge/core/compiled.py (the stages import it; this build tool sits on top).
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from nudge.core.compiled import COMPILED, GROUP, ROOT, built, extension


def remove() -> list[Path]:
    """Delete every extension built here (`make pure`)."""
    gone = []
    for suffix in EXTENSION_SUFFIXES:
        for so in (ROOT / "nudge").rglob(f"*{suffix}"):
            so.unlink()
            gone.append(so)
    return gone


def build() -> None:
    """Compile COMPILED in place, unless the build is already current."""
    if built():
        print("nudge.tools.native: compiled modules are up to date")
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
            raise SystemExit(f"nudge.tools.native: {rel} was not compiled")
        os.utime(so)
    print(f"nudge.tools.native: compiled {len(COMPILED)} modules")


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        build()
    elif argv == ["remove"]:
        print(f"nudge.tools.native: removed {len(remove())} extension files")
    elif argv == ["status"]:
        print("compiled and current" if built() else "pure Python (or a stale build)")
    else:
        print("usage: python -m nudge.tools.native build|remove|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
