"""Secrets: keys from the environment or files, rotation, tokens that cannot be forged, the
demo key refused for real email, log ids that a list of candidate ids cannot reverse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import ConfigError, load_text
from nudge.core.ids import log_id, use_log_key
from nudge.core.keyring import DEMO_SECRET, Keyring, load_keyring
from nudge.core.timefmt import parse_duration, parse_iso
from nudge.core.tokens import (
    Claims,
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    TokenError,
    UnknownKeyToken,
    WrongPurpose,
    for_email,
    sign,
    verify,
)

ROOT = Path(__file__).resolve().parent.parent
K1, K2 = "first-key-" + "1" * 30, "second-key-" + "2" * 30
DAY = parse_duration("1d")


def keyring(text: str, **env: str) -> Keyring:
    return load_keyring(load_text(text).secrets, env)


ROTATED = """
[secrets]
signing_key = "k2"
rotation_window = "30d"
[secrets.keys.k2]
env = "KEY_TWO"
[secrets.keys.k1]
env = "KEY_ONE"
retired = "2026-11-01T00:00:00Z"
"""


def test_keys_rotate_old_tokens_verify_within_the_window_only() -> None:
    before = keyring('[secrets]\nsigning_key = "k1"\n[secrets.keys.k1]\nenv = "KEY_ONE"\n',
                     KEY_ONE=K1)
    sent = parse_iso("2026-10-20T09:00:00Z")
    old = sign(before, for_email("unsubscribe", "c1", "cart_abandonment", 1, 1, None,
                                 due=sent, lifetime=400 * DAY))
    after = keyring(ROTATED, KEY_ONE=K1, KEY_TWO=K2)
    new = sign(after, for_email("unsubscribe", "c1", "cart_abandonment", 1, 2, None,
                                due=sent, lifetime=400 * DAY))
    assert old.startswith("k1.") and new.startswith("k2.")
    retired = parse_iso("2026-11-01T00:00:00Z")
    assert verify(after, old, purpose="unsubscribe", now=retired + 29 * DAY).key_id == "k1"
    assert verify(after, new, purpose="unsubscribe", now=retired + 31 * DAY).stage == 2
    with pytest.raises(UnknownKeyToken, match="rotation window ended at 2026-12-01"):
        verify(after, old, purpose="unsubscribe", now=retired + 31 * DAY)
    # a key removed from the config verifies nothing (revocation)
    revoked = keyring('[secrets]\nsigning_key = "k2"\n[secrets.keys.k2]\nenv = "KEY_TWO"\n',
                      KEY_TWO=K2)
    with pytest.raises(UnknownKeyToken):
        verify(revoked, old, purpose="unsubscribe", now=sent)


def test_a_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(K1 + "\n")  # docker/k8s secrets end with a newline
    ring = keyring(f'[secrets]\nsigning_key = "f"\n[secrets.keys.f]\nfile = "{tmp_path / "k"}"\n')
    token = sign(ring, Claims("open", "c", "t", 1, 1, None, "", 10))
    env_ring = keyring('[secrets]\nsigning_key = "f"\n[secrets.keys.f]\nenv = "K"\n', K=K1)
    assert verify(env_ring, token, purpose="open", now=0).customer_id == "c"


@pytest.mark.parametrize(("text", "env", "message"), [
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "NOPE"\n', {},
     "config secrets.keys.a.env: environment variable NOPE is not set"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "K"\n', {"K": "short"},
     "config secrets.keys.a.env: environment variable K holds 5 bytes; a key needs at least 32"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "K"\n', {"K": DEMO_SECRET.decode()},
     "config secrets.keys.a.env: environment variable K holds the public demo key"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nfile = "/nonexistent/k"\n', {},
     "config secrets.keys.a.file: cannot read /nonexistent/k: No such file or directory"),
])
def test_a_missing_or_weak_key_names_its_config_key(text: str, env: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(ConfigError) as err:
        keyring(text, **env)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(("text", "message"), [
    ('[secrets]\nsigning_key = "b"\n[secrets.keys.a]\nenv = "K"\n',
     "config secrets.signing_key: 'b' is not in secrets.keys"),
    ('[secrets.keys.a]\nenv = "K"\n', "config secrets.signing_key: not set"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "K"\nfile = "f"\n',
     "config secrets.keys.a.env: set exactly one of env"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "K"\n'
     'retired = "2026-01-01T00:00:00Z"\n',
     "config secrets.signing_key: 'a' is retired"),
    ('[secrets]\nsigning_key = "a"\n[secrets.keys.a]\nenv = "K"\nretired = "soon"\n',
     "config secrets.keys.a.retired: expected an ISO time"),
    ('[secrets]\nsigning_key = "a"\nlog_id_key = "z"\n[secrets.keys.a]\nenv = "K"\n',
     "config secrets.log_id_key: 'z' is not in secrets.keys"),
    ('[secrets]\nsigning_key = "a b"\n[secrets.keys."a b"]\nenv = "K"\n',
     'config secrets.keys.a b: a key id is'),
    ('[render]\nunsubscribe_secret = "change-me"\n',
     "config render.unsubscribe_secret: unknown key"),
])
def test_secrets_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(text)
    assert str(err.value).startswith(message)


def test_tokens_refuse_every_tampering() -> None:
    ring = Keyring({"k1": K1.encode()}, signing_id="k1")
    click = sign(ring, for_email("click", "c1", "browse_abandonment", 2, 1, "b", due=0,
                                 lifetime=DAY, url="https://shop.example/p/1"))
    got = verify(ring, click, purpose="click", now=DAY)
    assert (got.url, got.variant, got.episode) == ("https://shop.example/p/1", "b", 2)
    key_id, body, mac = click.split(".")
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    cases = {
        f"{key_id}.{flipped}.{mac}": ForgedToken,           # a claim altered
        f"{key_id}.{body}.{'A' * len(mac)}": ForgedToken,   # a made-up signature
        f"{key_id}.{body}": MalformedToken,
        f"{key_id}.{body}.{mac}.x": MalformedToken,
        f"{key_id}.{body}.{mac[:-4]}": ForgedToken,         # truncated
        f"{key_id}.{body}.%%%": MalformedToken,
        f"demo.{body}.{mac}": UnknownKeyToken,
        "k1.é.x": MalformedToken,
        "k1." + "A" * 5000 + ".x": MalformedToken,
    }
    for token, error in cases.items():
        with pytest.raises(error):
            verify(ring, token, purpose="click", now=0)
    # the URL is signed in: another target under the same signature is refused
    other = sign(ring, for_email("click", "c1", "browse_abandonment", 2, 1, "b", due=0,
                                 lifetime=DAY, url="https://evil.example/"))
    with pytest.raises(ForgedToken):
        verify(ring, f"{key_id}.{other.split('.')[1]}.{mac}", purpose="click", now=0)
    with pytest.raises(WrongPurpose):
        verify(ring, click, purpose="unsubscribe", now=0)
    with pytest.raises(ExpiredToken):
        verify(ring, click, purpose="click", now=DAY + 1)
    # the demo keyring's signature is no good under a real keyring, whatever the key id says
    demo = load_keyring(load_text("").secrets)
    assert demo.demo
    forged = sign(demo, Claims("unsubscribe", "victim", "t", 1, 1, None, "", 10**13))
    with pytest.raises(UnknownKeyToken):
        verify(ring, forged, purpose="unsubscribe", now=0)
    with pytest.raises(ForgedToken):
        verify(ring, "k1" + forged[len("demo"):], purpose="unsubscribe", now=0)


def test_tokens_are_url_safe_and_compact() -> None:
    ring = Keyring({"k1": K1.encode()}, signing_id="k1")
    token = sign(ring, for_email("unsubscribe", "customer-00012345", "cart_abandonment", 1, 2,
                                 "urgency", due=parse_iso("2026-10-05T11:00:00Z"),
                                 lifetime=400 * DAY))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(token) < 140


def test_log_ids_are_keyed_and_stable_for_a_key() -> None:
    use_log_key(b"a" * 32)
    a = log_id("customer-42")
    use_log_key(b"b" * 32)
    assert log_id("customer-42") != a
    # the unkeyed digest (what a list of candidate ids would be hashed with) does not match
    import hashlib
    assert hashlib.blake2b(b"customer-42", digest_size=6).hexdigest() not in (a, log_id("c"))
    # the same config gives the same log ids in another process (a restart)
    text = '[secrets]\nsigning_key = "k"\n[secrets.keys.k]\nenv = "LOGKEY"\n'
    code = ("import sys; from nudge.core.config import load_text; "
            "from nudge.core.keyring import activate; from nudge.core.ids import log_id; "
            f"activate(load_text({text!r}).secrets); print(log_id('customer-42'))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOGKEY=K1)
    runs = {subprocess.run([sys.executable, "-c", code], env=env, text=True, check=True,
                           capture_output=True).stdout for _ in range(2)}
    assert len(runs) == 1
    other = subprocess.run([sys.executable, "-c", code], env=dict(env, LOGKEY=K2), text=True,
                           check=True, capture_output=True).stdout
    assert runs != {other}


def nudge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nudge", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **env))


@pytest.mark.parametrize("transport", ["esp", "smtp", "kafka"])
def test_run_and_check_refuse_the_demo_key_for_real_email(tmp_path: Path,
                                                          transport: str) -> None:
    conf = tmp_path / "nudge.toml"
    conf.write_text(f'[delivery]\ntransport = "{transport}"\n')
    for command in ("check", "run"):
        r = nudge(command, "--config", str(conf))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            "nudge: config secrets.signing_key: not set, and delivery.transport = "
            f"'{transport}' sends real email: configure [secrets] with keys from env or files "
            "(the demo key lets anyone forge tokens)"]
    conf.write_text(f'[delivery]\ntransport = "{transport}"\n' + ROTATED)
    r = nudge("check", "--config", str(conf), KEY_ONE=K1)  # KEY_TWO, the signing key, unset
    assert r.returncode == 2
    assert r.stderr.strip() == ("nudge: config secrets.keys.k2.env: environment variable "
                                "KEY_TWO is not set")
    r = nudge("check", "--config", str(conf), KEY_ONE=K1, KEY_TWO=K2)
    assert r.returncode == 0, r.stderr
    assert "secrets: signing key 'k2', log ids keyed by 'k2'; verifying k1 (retired)" in r.stdout
    assert K1 not in r.stdout + r.stderr and K2 not in r.stdout + r.stderr


def test_check_names_the_demo_key_for_the_outbox(tmp_path: Path) -> None:
    conf = tmp_path / "nudge.toml"
    conf.write_text('[delivery]\ntransport = "outbox"\n')
    r = nudge("check", "--config", str(conf))
    assert r.returncode == 0, r.stderr
    assert "secrets: the public demo key" in r.stdout


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.text("ABCabc019-_", max_size=60), min_size=1, max_size=4)
                 .map(".".join)))
def test_any_string_is_a_token_error_never_a_crash(text: str) -> None:
    ring = Keyring({"k1": K1.encode(), "A": K2.encode()}, signing_id="k1")
    try:
        verify(ring, text, purpose="unsubscribe", now=0)
    except TokenError as exc:
        assert exc.status in (400, 403, 410)
    else:
        raise AssertionError(f"{text!r} verified")


def test_the_production_example_reads_its_key_from_a_docker_secret(tmp_path: Path) -> None:
    text = (ROOT / "docker" / "nudge.toml").read_text()
    cfg = load_text(text)
    assert [(k.id, k.file) for k in cfg.secrets.keys] == [("k1", "/run/secrets/nudge_signing_key")]
    assert (cfg.delivery.smtp.tls, cfg.delivery.smtp.port) == ("implicit", 465)
    key = tmp_path / "signing-key"
    key.write_text(K1 + "\n")
    esp = text.replace("/run/secrets/nudge_signing_key", str(key)).replace(
        'transport = "outbox"', 'transport = "esp"')
    assert load_keyring(load_text(esp).secrets).signing_id == "k1"
    conf = tmp_path / "nudge.toml"
    conf.write_text(esp)
    r = nudge("check", "--config", str(conf))
    assert r.returncode == 0, r.stderr
