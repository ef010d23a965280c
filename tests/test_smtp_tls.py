"""SMTP over TLS against aiosmtpd with a certificate from the test's own CA (trustme): implicit
TLS (port 465 style) and STARTTLS deliver and authenticate encrypted; AUTH never crosses the
wire in plain text unless the config explicitly allows it; no silent fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from nudge.core.config import load_text
from nudge.core.deliveryconfig import SmtpConfig
from nudge.core.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from nudge.delivery.smtp import SmtpTransport
from tests.servers import smtp_server
from tests.test_delivery import email

PASSWORD_ENV = "NUDGE_TEST_SMTP_PASSWORD"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    yield


def config(port: int, **kw: object) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, password_env=PASSWORD_ENV,
                      max_attempts=1, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_delivers_and_authenticates_encrypted(ca: trustme.CA, ca_file: str,
                                                  tls: str) -> None:
    leaf = ca.issue_cert("127.0.0.1")
    with smtp_server(tls=tls, certificate=leaf, users={"nudge": "s3cret"}) as (sink, port):
        t = SmtpTransport(config(port, tls=tls, ca_file=ca_file, username="nudge"))
        t.send(email(1))
        t.send(email(2))  # the same connection, still encrypted
        t.close()
    assert sink.logins == [("nudge", "s3cret", True)]
    assert sink.encrypted == [True, True] and len(sink.messages) == 2


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_an_untrusted_certificate_sends_nothing(ca: trustme.CA, tls: str) -> None:
    leaf = ca.issue_cert("127.0.0.1")
    with smtp_server(tls=tls, certificate=leaf, users={"nudge": "s3cret"}) as (sink, port):
        t = SmtpTransport(config(port, tls=tls, username="nudge"))  # the system's trust only
        with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            t.send(email(1))
        t.close()
    assert sink.logins == [] and sink.messages == []


def test_a_certificate_for_another_host_sends_nothing(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("mail.other.example")
    with smtp_server(tls="implicit", certificate=leaf) as (sink, port):
        t = SmtpTransport(config(port, tls="implicit", ca_file=ca_file))
        with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            t.send(email(1))
    assert sink.messages == []


def test_starttls_not_offered_is_an_error_not_a_fallback(ca_file: str) -> None:
    with smtp_server(users={"nudge": "s3cret"}, auth_require_tls=False) as (sink, port):
        t = SmtpTransport(config(port, tls="starttls", ca_file=ca_file, username="nudge"))
        with pytest.raises(TransientDeliveryError, match="STARTTLS"):
            t.send(email(1))
    assert sink.logins == [] and sink.messages == []


def test_auth_over_plain_text_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        load_text('[delivery.smtp]\ntls = "none"\nusername = "nudge"\n')
    assert str(err.value).startswith("config delivery.smtp.username: AUTH would cross the "
                                     "network unencrypted")
    with pytest.raises(ConfigError, match=r"delivery\.smtp\.starttls: unknown key"):
        load_text("[delivery.smtp]\nstarttls = true\n")
    assert load_text('[delivery.smtp]\ntls = "none"\nusername = "u"\n'
                     "allow_plaintext_auth = true\n").delivery.smtp.allow_plaintext_auth
    assert load_text("").delivery.smtp.tls == "starttls"  # encrypted unless told otherwise
    with smtp_server(users={"nudge": "s3cret"}, auth_require_tls=False) as (sink, port):
        # a config built in code skips the loader's check: the transport checks again
        t = SmtpTransport(config(port, tls="none", username="nudge"))
        with pytest.raises(PermanentDeliveryError, match="refusing to send AUTH unencrypted"):
            t.send(email(1))
        assert sink.logins == []
        t = SmtpTransport(config(port, tls="none", username="nudge", allow_plaintext_auth=True))
        t.send(email(2))
        t.close()
    assert sink.logins == [("nudge", "s3cret", False)] and sink.encrypted == [False]


def test_a_username_without_its_password_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(ConfigError, match=f"delivery.smtp.password_env: environment variable "
                                          f"{PASSWORD_ENV} is not set"):
        SmtpTransport(config(25, username="nudge"))
