"""An Email as an RFC 5322 message: multipart/alternative (text, then HTML), UTF-8.

The Date header is the decision's event time and the Message-ID derives from the
idempotency key, so the same decision always gives the same message, byte for byte.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from nudge.records import Email
from nudge.timefmt import to_datetime


def message_id(email: Email) -> str:
    domain = parseaddr(email.from_addr)[1].rpartition("@")[2] or "nudge.invalid"
    digest = hashlib.sha256(email.key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


# Long structured headers such as List-Unsubscribe are folded by the default policy right
# after the colon, which some receivers mis-parse; 998 is RFC 5322's hard limit.
POLICY = SMTP.clone(max_line_length=998)


def to_mime(email: Email) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = email.from_addr
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(to_datetime(email.due))
    msg["Message-ID"] = message_id(email)
    for name, value in email.headers:
        msg[name] = value
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg
