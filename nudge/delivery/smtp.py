"""SMTP delivery (smtplib). 4xx replies, disconnects and timeouts are transient; 5xx replies
are permanent. One connection is reused and reopened after any error."""

from __future__ import annotations

import contextlib
import os
import smtplib
from email.utils import parseaddr

from nudge.core.config import SmtpConfig
from nudge.core.errors import PermanentDeliveryError, TransientDeliveryError
from nudge.core.records import Email
from nudge.delivery.message import recipient, to_bytes


class SmtpTransport:
    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.password = os.environ.get(config.password_env, "")
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._conn is None:
            c = self.config
            conn = smtplib.SMTP(c.host, c.port, timeout=c.timeout / 1000)
            if c.starttls:
                conn.starttls()
            if c.username:
                conn.login(c.username, self.password)
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def send(self, email: Email) -> str:
        where = f"SMTP {self.config.host}:{self.config.port}"
        rcpt = recipient(email)  # raises PermanentDeliveryError before any connection
        try:
            conn = self._connect()
            sender = parseaddr(email.from_addr)[1]
            # an address outside ASCII needs the server's SMTPUTF8 extension (RFC 6531)
            utf8 = not (sender.isascii() and rcpt.isascii())
            refused = conn.sendmail(sender, [rcpt], to_bytes(email),
                                    mail_options=["SMTPUTF8"] if utf8 else ())
        except smtplib.SMTPRecipientsRefused as exc:
            self._drop()
            code, msg = next(iter(exc.recipients.values()))
            raise self._error(where, code, msg) from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise self._error(where, exc.smtp_code, exc.smtp_error) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
        if refused:
            code, msg = next(iter(refused.values()))
            raise self._error(where, code, msg)
        return f"smtp {self.config.host}:{self.config.port}"

    @staticmethod
    def _error(where: str, code: int, msg: bytes | str) -> Exception:
        text = msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)
        if 400 <= code < 500:
            return TransientDeliveryError(f"{where}: {code} {text}", status=code, response=text)
        return PermanentDeliveryError(f"{where}: {code} {text}", status=code, response=text)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._conn = None
