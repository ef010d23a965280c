"""A stand-in for four ESPs' send APIs that validates each request against the provider's
documented format (fields, types, auth, where the reply address goes) and answers as the
provider does: SendGrid `POST /v3/mail/send`, Postmark `POST /email`, Mailgun
`POST /v3/{domain}/messages` (form fields), Resend `POST /emails` (with Idempotency-Key)."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

KEY = "esp-test-key"
# SendGrid refuses these among `headers` (its docs: reserved headers)
SENDGRID_RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                     "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc",
                     "bcc"}
RESEND_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class Invalid(Exception):
    pass


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise Invalid(message)


def _strings(obj: Any, where: str) -> None:
    _need(isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in obj.items()), f"{where}: strings only")


def sendgrid(headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    _need(headers.get("authorization") == f"Bearer {KEY}", "401")
    p = body.get("personalizations")
    _need(isinstance(p, list) and p and all(
        isinstance(x.get("to"), list) and x["to"] and all("@" in t.get("email", "")
                                                          for t in x["to"]) for x in p),
          "personalizations[].to[].email required")
    _need("@" in body.get("from", {}).get("email", ""), "from.email required")
    _need(isinstance(body.get("subject"), str) and body["subject"], "subject required")
    content = body.get("content")
    _need(isinstance(content, list) and content and all(
        c.get("type") in ("text/plain", "text/html") and isinstance(c.get("value"), str)
        for c in content), "content[] of {type, value}")
    _need(content[0]["type"] == "text/plain", "text/plain must come first")
    hdrs = body.get("headers", {})
    _strings(hdrs, "headers")
    bad = SENDGRID_RESERVED & {k.lower() for k in hdrs}
    _need(not bad, f"headers: reserved {sorted(bad)}; use reply_to")
    if "reply_to" in body:
        _need("@" in body["reply_to"].get("email", ""), "reply_to.email")
    _strings(body.get("custom_args", {}), "custom_args")
    return 202, {"X-Message-Id": uuid.uuid4().hex}, None


def postmark(headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
    if headers.get("x-postmark-server-token") != KEY:
        return 401, {}, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
    for name in ("From", "To", "Subject"):
        _need(isinstance(body.get(name), str) and body[name], f"{name} required")
    _need(isinstance(body.get("HtmlBody"), str) or isinstance(body.get("TextBody"), str),
          "HtmlBody or TextBody required")
    h = body.get("Headers", [])
    _need(isinstance(h, list) and all(set(x) == {"Name", "Value"} for x in h),
          "Headers: [{Name, Value}]")
    _need(not any(x["Name"].lower() == "reply-to" for x in h), "use ReplyTo, not a header")
    _strings(body.get("Metadata", {}), "Metadata")
    _need(isinstance(body.get("Tag", ""), str) and len(body.get("Tag", "")) <= 1000, "Tag")
    _need(body.get("TrackLinks", "None") in ("None", "HtmlAndText", "HtmlOnly", "TextOnly"),
          "TrackLinks")
    return 200, {}, {"To": body["To"], "SubmittedAt": "2026-10-05T10:00:00Z",
                     "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK"}


def mailgun(headers: dict[str, str], form: dict[str, list[str]]) -> tuple[int, dict[str, str],
                                                                           Any]:
    auth = headers.get("authorization", "")
    expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    if auth != expected:
        return 401, {}, {"message": "Invalid private key"}
    for name in ("from", "to", "subject"):
        _need(bool(form.get(name)), f"{name} parameter is missing")
    _need(bool(form.get("text") or form.get("html")), "Need at least one of 'text' or 'html'")
    _need(not any(k.startswith(("x-", "X-")) for k in form), "custom headers need h:")
    return 200, {}, {"id": f"<{uuid.uuid4().hex}@mg.shop.example>",
                     "message": "Queued. Thank you."}


@dataclass
class FormatServer:
    port: int = 0
    accepted: list[tuple[str, Any]] = field(default_factory=list)  # (provider, body)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (provider, why)
    idempotency: dict[str, str] = field(default_factory=dict)  # Resend: key -> id

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def resend(server: FormatServer, headers: dict[str, str], body: Any
           ) -> tuple[int, dict[str, str], Any]:
    if headers.get("authorization") != f"Bearer {KEY}":
        return 401, {}, {"statusCode": 401, "name": "missing_api_key", "message": "no key"}
    for name in ("from", "subject"):
        _need(isinstance(body.get(name), str) and body[name], f"{name} required")
    to = body.get("to")
    _need(isinstance(to, str) or (isinstance(to, list) and 0 < len(to) <= 50), "to")
    _need(isinstance(body.get("html"), str) or isinstance(body.get("text"), str), "html/text")
    _strings(body.get("headers", {}), "headers")
    for tag in body.get("tags", []):
        _need(RESEND_TAG.match(tag.get("name", "")) is not None
              and RESEND_TAG.match(tag.get("value", "")) is not None, f"tag {tag}")
    key = headers.get("idempotency-key")
    with server.lock:
        if key and key in server.idempotency:
            return 200, {}, {"id": server.idempotency[key]}
        ident = str(uuid.uuid4())
        if key:
            server.idempotency[key] = ident
    return 200, {}, {"id": ident}


def _handler(server: FormatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path
            try:
                if path.startswith("/v3/") and path.endswith("/messages"):
                    kind = "mailgun"
                    _need(headers.get("content-type", "").startswith(
                        "application/x-www-form-urlencoded"), "form fields expected")
                    body: Any = parse_qs(raw.decode(), keep_blank_values=True)
                    status, extra, answer = mailgun(headers, body)
                else:
                    _need(headers.get("content-type", "").startswith("application/json"),
                          "JSON expected")
                    body = json.loads(raw)
                    if path == "/v3/mail/send":
                        kind = "sendgrid"
                        status, extra, answer = sendgrid(headers, body)
                    elif path == "/email":
                        kind = "postmark"
                        status, extra, answer = postmark(headers, body)
                    elif path == "/emails":
                        kind = "resend"
                        status, extra, answer = resend(server, headers, body)
                    else:
                        status, extra, answer, kind = 404, {}, {"message": "no route"}, "?"
            except (Invalid, ValueError, AttributeError, TypeError) as exc:
                with server.lock:
                    server.refused.append((path, str(exc)))
                status, extra, answer = 400, {}, {"message": str(exc)}
            else:
                if status < 300:
                    with server.lock:
                        server.accepted.append((kind, body))
            payload = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def format_server() -> Iterator[FormatServer]:
    state = FormatServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
