"""Compiled by mypyc in part (nudge/native.py): refuse to import an outdated build."""

from nudge.native import check_fresh

check_fresh(__path__[0])
