"""Each ESP transport against a stand-in that validates its provider's documented request
format; the reply address in the provider's own field; the metadata that maps webhooks back."""

from __future__ import annotations

import dataclasses

import pytest

from nudge.core.deliveryconfig import EspConfig
from nudge.core.errors import PermanentDeliveryError
from nudge.core.records import Email
from nudge.delivery.esp import EspTransport
from tests.espformats import KEY, format_server
from tests.test_delivery import email

PATHS = {"sendgrid": "/v3/mail/send", "postmark": "/email",
         "mailgun": "/v3/mg.shop.example/messages", "resend": "/emails"}


def replying(n: int = 1) -> Email:
    e = email(n)
    return dataclasses.replace(e, headers=(*e.headers, ("Reply-To", "care@shop.example")))


@pytest.mark.parametrize("provider", sorted(PATHS))
def test_each_provider_sends_its_documented_format(provider: str) -> None:
    with format_server() as srv:
        cfg = EspConfig(provider=provider, url=srv.base() + PATHS[provider],  # type: ignore[arg-type]
                        domain="mg.shop.example")
        t = EspTransport(cfg, api_key=KEY)
        receipt = t.send(replying())
        assert srv.refused == []
        assert receipt and not receipt.startswith("http ")  # the provider's message id
        [(kind, body)] = srv.accepted
        assert kind == provider
        e = replying()
        if provider == "sendgrid":
            assert body["reply_to"] == {"email": "care@shop.example"}
            assert body["custom_args"] == {"nudge_customer": e.customer_id,
                                           "nudge_trigger": e.trigger, "nudge_episode": "1",
                                           "nudge_stage": "1", "nudge_key": e.key}
        elif provider == "postmark":
            assert body["ReplyTo"] == "care@shop.example"
            assert body["Metadata"]["nudge_key"] == e.key
            assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} \
                in body["Headers"]
        elif provider == "mailgun":
            assert body["h:Reply-To"] == ["care@shop.example"]
            assert body["v:nudge_customer"] == [e.customer_id]
            assert body["to"] == [e.to]
        else:
            assert body["reply_to"] == "care@shop.example"
            assert {"name": "nudge_stage", "value": "1"} in body["tags"]
        t.close()


def test_sendgrid_reply_to_never_in_headers() -> None:
    """SendGrid rejects Reply-To among `headers` (a reserved header): the stand-in refuses it
    as SendGrid does, and the transport puts it in `reply_to`."""
    with format_server() as srv:
        t = EspTransport(EspConfig(url=srv.base() + PATHS["sendgrid"]), api_key=KEY)
        t.send(replying())
        assert "Reply-To" not in srv.accepted[0][1]["headers"]
        wrong = EspTransport(EspConfig(url=srv.base() + PATHS["sendgrid"]), api_key="nope")
        with pytest.raises(PermanentDeliveryError):
            wrong.send(replying())


def test_resend_idempotency_key_keeps_a_retry_from_sending_twice() -> None:
    with format_server() as srv:
        t = EspTransport(EspConfig(provider="resend", url=srv.base() + "/emails"), api_key=KEY)
        first = t.send(replying(3))
        again = t.send(replying(3))  # a retry after a timeout that hid the acceptance
        assert first == again
        assert len(srv.idempotency) == 1


def test_mailgun_default_url_names_the_domain() -> None:
    t = EspTransport(EspConfig(provider="mailgun", domain="mg.shop.example"), api_key=KEY)
    assert t.url == "https://api.mailgun.net/v3/mg.shop.example/messages"
    t.close()
