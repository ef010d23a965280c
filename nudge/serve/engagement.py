"""The track events `nudge serve` itself produces (opens, clicks, unsubscribes, and what ESP
webhooks report), in the shapes the flow reads: `userId` is the customer id, `messageId` is
derived from what identifies the happening, so a webhook delivered twice or a pixel fetched
twice within the same second is one event to the flow's de-duplication.

    Email Delivered      {email_key, trigger, stage, provider}
    Email Opened         {email_key, trigger, stage, variant, machine}
    Email Link Clicked   {email_key, trigger, stage, variant, url, machine}
    Email Bounced        {bounce_type: hard|soft, email, email_key, trigger, stage, provider,
                          reason}
    Email Marked as Spam {email, email_key, trigger, stage, provider}
    Unsubscribed         {scope: "all" or a journey, email_key?, source: one_click|page|webhook}
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from nudge.core.timefmt import to_iso
from nudge.serve.collector import Record


def track(event: str, customer_id: str, properties: dict[str, Any], at_ms: int,
          identity: str) -> Record:
    """`identity` names the happening (a provider's event id, or the token and the second):
    the messageId is its digest."""
    mid = "nudge-" + hashlib.sha256(f"{event}\x1f{identity}".encode()).hexdigest()[:32]
    doc = {"type": "track", "event": event, "userId": customer_id, "messageId": mid,
           "timestamp": to_iso(at_ms), "properties": properties,
           "context": {"library": {"name": "nudge-serve"}}}
    return Record(customer_id.encode(), orjson.dumps(doc), mid)


def from_key(email_key: str) -> tuple[str, str, int] | None:
    """(customer, trigger, stage) of an email key (customer, trigger, episode, stage joined by
    the unit separator), or None if it is not one."""
    parts = email_key.split("\x1f")
    if len(parts) != 4 or not parts[0] or not parts[3].isdigit():
        return None
    return parts[0], parts[1], int(parts[3])
