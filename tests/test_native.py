"""The compiled build (nudge/tools/native.py): the same decisions and emails as pure Python,
and an outdated extension never runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from nudge.app.runflow import DEMO_CONFIG
from nudge.core import compiled as native
from nudge.core.errors import StaleBuildError

SAMPLE = native.ROOT / "nudge" / "data" / "sample-events.jsonl"


def test_a_source_edited_after_it_was_compiled_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text("X = 1\n")
    so = tmp_path / f"mod{EXTENSION_SUFFIXES[0]}"
    so.write_bytes(b"")
    (tmp_path / "other.py").write_text("Y = 1\n")  # no extension: never stale
    os.utime(so, (1_000, 1_000))
    os.utime(src, (2_000, 2_000))
    assert native.stale(tmp_path) == [str(src)]
    with pytest.raises(StaleBuildError, match=r"mod\.py: edited after it was compiled; run "
                                              r"`make compile`"):
        native.check_fresh(str(tmp_path))
    os.utime(so, (3_000, 3_000))  # rebuilt
    assert native.stale(tmp_path) == []
    native.check_fresh(str(tmp_path))


def _replay(tmp_path: Path, name: str,
            pythonpath: Path | None) -> tuple[str, list[str], dict[str, bytes]]:
    run = tmp_path / name
    run.mkdir()
    env = dict(os.environ, PYTHONHASHSEED="0")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)  # ahead of the editable install's finder
    code = ("import json, sys; from nudge.app import cli; from nudge.core import compiled; "
            "code = cli.main(sys.argv[1:]); "
            "print(json.dumps(compiled.compiled_modules())); sys.exit(code)")
    done = subprocess.run(
        [sys.executable, "-c", code, "replay", str(SAMPLE), "--config", str(DEMO_CONFIG),
         "--decisions", "decisions.jsonl", "--outbox", "outbox"],
        cwd=run, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    compiled = json.loads(done.stdout.strip().splitlines()[-1])
    emails = {p.name: p.read_bytes() for p in sorted((run / "outbox").glob("*.eml"))}
    return (run / "decisions.jsonl").read_text(), compiled, emails


@pytest.mark.slow
@pytest.mark.skipif(not native.built(), reason="needs the compiled build (make compile)")
def test_compiled_and_pure_python_make_the_same_decisions_and_emails(tmp_path: Path) -> None:
    pure = tmp_path / "pure-src"
    shutil.copytree(native.ROOT / "nudge", pure / "nudge",  # the sources without extensions
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    fast_log, fast_mods, fast_mail = _replay(tmp_path, "compiled", None)
    slow_log, slow_mods, slow_mail = _replay(tmp_path, "pure", pure)
    assert sorted(fast_mods) == sorted(m.removesuffix(".py").replace("/", ".")
                                       for m in native.COMPILED)
    assert slow_mods == []
    assert fast_log.count("\n") > 1_000 and len(fast_mail) > 100  # the demo's whole run
    assert fast_log == slow_log
    assert fast_mail == slow_mail
