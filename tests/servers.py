"""Real servers for delivery tests, on loopback: an ESP stand-in (HTTP) that can misbehave
like real ESPs do, and an SMTP server (aiosmtpd) that can refuse."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "503", "slow", "reset")


@dataclass
class EspServer:
    """Answers POST /v3/mail/send. `script` gives the answers of the next requests in order
    ("202", "429", "500", "503", "400", "slow", "reset"); after it, faults come at
    `fault_rate` (30% unless told) from a seeded RNG, else 202. Every request body is
    recorded. `delay` slows every answer down; while `hold` is cleared, requests wait for
    it (an ESP that stopped answering); `max_in_flight` is the most requests seen at once.
    With `together` = n, the first n requests are held until all n are in flight at once (a
    barrier: it proves concurrency without timing; `gate.broken` if they never were).

    Like ESPs that support an `Idempotency-Key` header, a repeated key is answered 202 and
    not accepted twice, unless `dedupe` is off (SendGrid, SES and Mailgun deliver every
    copy; `copies` counts them); a "slow" answer accepts the message and answers after the client
    has timed out, which is exactly when a client retries something already accepted."""

    script: list[str] = field(default_factory=list)
    fault_rate: float = 0.3
    seed: int = 1
    slow_seconds: float = 2.0
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    by_key: dict[str, Any] = field(default_factory=dict)  # Idempotency-Key -> accepted body
    repeats: int = 0  # 202s for a key already accepted: copies the key kept from going out
    dedupe: bool = True  # False: every 202 delivers, a repeated key too (most ESPs)
    copies: dict[str, int] = field(default_factory=dict)  # key -> times delivered
    accepted_at: dict[str, float] = field(default_factory=dict)  # key -> first acceptance
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    together: int = 0
    arrived: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.gate = threading.Barrier(max(self.together, 1), timeout=30)
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.hold.set()

    def next_answer(self) -> str:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(FAULTS)
            return "202"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3/mail/send"


def _handler(server: EspServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            except (ValueError, TypeError):  # a client killed mid-request sent half a body
                self.close_connection = True
                return
            with server.lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
                server.arrived += 1
                held = server.arrived <= server.together
            done = False

            def answered() -> None:
                # Counted out before the answer leaves: once the client has it, it may send
                # its next request at once, and that one must not overlap this one.
                nonlocal done
                if not done:
                    done = True
                    with server.lock:
                        server.in_flight -= 1

            try:
                if held:  # a broken barrier is for the test to see (`gate.broken`)
                    with contextlib.suppress(threading.BrokenBarrierError):
                        server.gate.wait()
                server.hold.wait()
                if server.delay:
                    time.sleep(server.delay)
                self._answer(body, answered)
            finally:
                answered()

        def _answer(self, body: Any, answered: Any) -> None:
            answer = server.next_answer()
            with server.lock:
                server.requests.append({"answer": answer, "body": body,
                                        "auth": self.headers.get("Authorization")})
            if answer == "reset":
                answered()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.close()
                return
            if answer == "slow":
                time.sleep(server.slow_seconds)
                answer = "202"  # accepted, but too late: the client has given up
            status = int(answer)
            if status == 202:
                key = self.headers.get("Idempotency-Key") or id(body)
                with server.lock:
                    if key not in server.keys:
                        server.keys.add(key)
                        server.accepted.append(body)
                        server.by_key[str(key)] = body
                        server.accepted_at[str(key)] = time.time()
                        server.copies[str(key)] = 1
                    elif server.dedupe:
                        server.repeats += 1
                    else:  # like SendGrid, SES, Mailgun: the copy goes out too
                        server.accepted.append(body)
                        server.copies[str(key)] += 1
            payload = b"" if status == 202 else json.dumps(
                {"errors": [{"message": f"status {status}"}]}).encode()
            answered()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            if status == 202:
                self.send_header("X-Message-Id", f"msg-{len(server.requests)}")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def esp_server(**kwargs: Any) -> Iterator[EspServer]:
    state = EspServer(**kwargs)
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


@dataclass
class SmtpSink:
    """aiosmtpd handler: accepts, or answers with the next scripted reply code. Records each
    message, whether its session was encrypted, and each AUTH attempt (user, password)."""

    script: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # user, password, TLS
    users: dict[str, str] = field(default_factory=dict)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.script:
            return self.script.pop(0)
        self.messages.append(envelope.original_content or envelope.content)
        self.encrypted.append(_encrypted(server))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        user, password = data.login.decode(), data.password.decode()
        self.logins.append((user, password, _encrypted(server)))
        return AuthResult(success=self.users.get(user) == password)


def _encrypted(server: Any) -> bool:
    return server.transport.get_extra_info("ssl_object") is not None


@contextmanager
def smtp_server(script: list[str] | None = None, *, tls: str = "none",
                certificate: Any = None, users: dict[str, str] | None = None,
                auth_require_tls: bool = True) -> Iterator[tuple[SmtpSink, int]]:
    """aiosmtpd on loopback. `tls`: "implicit" (TLS from the first byte), "starttls"
    (offered, and required before mail), or "none"; `certificate` a trustme leaf (the test's
    own CA). `users` turns on AUTH (refused over plain text unless `auth_require_tls` is
    off)."""
    import ssl

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = SmtpSink(script or [], users=dict(users or {}))
    server_ctx = None
    if tls != "none":
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(server_ctx)
    kwargs: dict[str, Any] = {"auth_require_tls": auth_require_tls}
    if users is not None:
        kwargs["authenticator"] = handler.authenticate
    if tls == "implicit":
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from the start
        kwargs.update(ssl_context=server_ctx, auth_require_tls=False)
    elif tls == "starttls":
        kwargs.update(tls_context=server_ctx, require_starttls=True)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
