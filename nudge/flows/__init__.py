"""Compiled by mypyc in part (nudge/core/compiled.py): refuse to import an outdated build."""

from nudge.core.compiled import check_fresh

check_fresh(__path__[0])
