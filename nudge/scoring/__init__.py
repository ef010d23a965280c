"""Scoring: what the decide step knows about items and customers beyond the rules.

Pure Python, no Bytewax. `recommend` keeps item-to-item recommendations in the stream: each
shard's `itemstats.ItemStatsBuilder` sends hourly deltas to the decide step's `ItemModel`
(`itemcodec` is its snapshot form). `propensity` is an online purchase-propensity model on
River, one per shard. `experiments` assigns variants and holdouts stably. Everything runs in
event time and is deterministic given the same sequence of calls.
"""
