"""What the RocksDB stores share (the ledger, the profile view, the customer stores)."""

from __future__ import annotations

from rocksdict import BottommostLevelCompaction, CompactOptions


def purge() -> CompactOptions:
    """A full compaction that rewrites the last level too: deleted values and the
    tombstones that name their keys leave the files (an erasure)."""
    opts = CompactOptions()
    opts.set_bottommost_level_compaction(BottommostLevelCompaction.force())
    opts.set_exclusive_manual_compaction(True)
    return opts
