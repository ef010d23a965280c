"""Scoring: what the decide step knows about items and customers beyond the rules.

Pure Python, no Bytewax: `recommend` (item-to-item recommendations kept in the stream),
`propensity` (an online purchase-propensity model on River, one per shard) and
`experiments` (stable variant and holdout assignment). Everything runs in event time and is
deterministic given the same sequence of calls.
"""
