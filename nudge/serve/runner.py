"""`nudge serve --config C`: uvicorn with `serve.workers` processes (the only module that
imports uvicorn).

Shutdown (SIGTERM or SIGINT): uvicorn stops accepting connections, lets the requests in
progress finish (each waits for its broker acknowledgement) for up to `serve.shutdown_timeout`,
then every worker's lifespan flushes its producer (nudge/serve/service.py: Service.stop), so
whatever was answered 200 is on the topic before the process exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from nudge.core import config as config_mod
from nudge.core.errors import ConfigError
from nudge.core.keyring import load_keyring
from nudge.serve import logs
from nudge.serve.asgi import CONFIG_ENV
from nudge.serve.metrics import ENV


def check(cfg: config_mod.Config) -> None:
    if cfg.secrets.demo:
        raise ConfigError("secrets.signing_key", "not set: nudge serve verifies unsubscribe "
                          "and tracking tokens, and with the public demo key anyone could "
                          "unsubscribe anyone (see [secrets] in docs/configuration.md)")
    load_keyring(cfg.secrets)  # every key readable now, not at the first click
    keys = os.environ.get(cfg.serve.write_keys_env, "")
    if not any(k.strip() for k in keys.split(",")):
        raise ConfigError("serve.write_keys_env",
                          f"environment variable {cfg.serve.write_keys_env} is not set (the "
                          "write keys SDKs send, comma-separated)")


def serve(config_path: str, *, port: int | None = None, workers: int | None = None) -> int:
    cfg = config_mod.load(config_path)
    check(cfg)
    logs.configure()
    metrics_dir = cfg.serve.metrics_dir
    owned = not metrics_dir
    if owned:
        metrics_dir = tempfile.mkdtemp(prefix="nudge-metrics-")
    else:
        # counters restart with the service: stale files would add the last run's counts
        shutil.rmtree(metrics_dir, ignore_errors=True)
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = metrics_dir
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    try:
        uvicorn.run("nudge.serve.asgi:create_app", factory=True, host=cfg.serve.host,
                    port=port if port is not None else cfg.serve.port,
                    workers=workers or cfg.serve.workers, log_config=None, access_log=False,
                    timeout_graceful_shutdown=max(1, cfg.serve.shutdown_timeout // 1000),
                    server_header=False, proxy_headers=False)
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
