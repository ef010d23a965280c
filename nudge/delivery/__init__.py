"""Transports: how a rendered Email leaves Nudge.

    outbox.py   RFC 5322 .eml files in a folder, with an index.html preview
    esp.py      an ESP HTTP API (SendGrid v3 mail/send shape) over httpx
    smtp.py     SMTP (smtplib)
    kafka.py    a Kafka topic (confluent-kafka producer)

Every transport implements `nudge.delivery.base.Transport` and raises only the DeliveryError
subtree of nudge.core.errors; retry with backoff is shared (nudge/delivery/retry.py).
"""
