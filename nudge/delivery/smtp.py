"""SMTP delivery (smtplib). 4xx replies, disconnects and timeouts are transient; 5xx replies
are permanent. One connection is reused and reopened after any error.

`tls`: "implicit" speaks TLS from the first byte (port 465, RFC 8314), "starttls" upgrades
before anything else is said and fails if the server does not offer it (never a silent
fallback to plain text), "none" is plain text. The server's certificate is verified against
the system's trust store, or `ca_file`. AUTH is only ever sent over TLS unless
`allow_plaintext_auth` says otherwise (the config refuses the combination; this module checks
again, in case a connection ended up unencrypted).
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
from email.utils import parseaddr
from typing import Any

from nudge.core.deliveryconfig import SmtpConfig
from nudge.core.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from nudge.core.records import Email
from nudge.delivery.message import recipient, to_bytes


class _SMTP(smtplib.SMTP):
    """smtplib's client, noting when DATA began (after that, a lost connection may hide an
    accepted message)."""

    in_data = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.in_data = True
        return super().data(msg)


class _SMTP_SSL(smtplib.SMTP_SSL):
    in_data = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.in_data = True
        return super().data(msg)


class SmtpTransport:
    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.password = os.environ.get(config.password_env, "")
        if config.username and not self.password:
            raise ConfigError("delivery.smtp.password_env",
                              f"environment variable {config.password_env} is not set")
        self.context = None if config.tls == "none" else \
            ssl.create_default_context(cafile=config.ca_file or None)
        self._conn: _SMTP | _SMTP_SSL | None = None

    def _connect(self) -> _SMTP | _SMTP_SSL:
        if self._conn is None:
            c = self.config
            timeout = c.timeout / 1000
            conn: _SMTP | _SMTP_SSL
            if c.tls == "implicit":
                conn = _SMTP_SSL(c.host, c.port, timeout=timeout, context=self.context)
            else:
                conn = _SMTP(c.host, c.port, timeout=timeout)
            try:
                if c.tls == "starttls":
                    conn.starttls(context=self.context)  # raises if not offered
                if c.username:
                    if not isinstance(conn.sock, ssl.SSLSocket) and not c.allow_plaintext_auth:
                        raise PermanentDeliveryError(
                            f"SMTP {c.host}:{c.port}: refusing to send AUTH unencrypted "
                            "(delivery.smtp.tls)")
                    conn.login(c.username, self.password)
            except BaseException:
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    conn.close()
                raise
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
            conn.in_data = False
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
            # lost after DATA began: the server may have taken the message without our
            # hearing its reply
            maybe_sent = self._conn is not None and self._conn.in_data
            self._drop()
            raise TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}",
                                         maybe_sent=maybe_sent) from None
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
