"""The API under benchmark: ``ecgk serve --model MODEL`` on a fresh database under a temporary home, with a
client key and rate limits out of the way (shared by service.py and soak.py)."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ecg_k.db.api_keys import create_api_key
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope
from ecgk_demo.loopback import free_port, running_server


@dataclass(frozen=True)
class BenchmarkApi:
    """Where the API answers, its client key, its process id and its database."""

    base_url: str
    key: str
    pid: int
    database_url: str


@contextmanager
def benchmark_api(model: Path, database_url: str | None = None, **env: str) -> Iterator[BenchmarkApi]:
    """Serve ``model`` on loopback (a fresh SQLite file unless ``database_url``); ``env``: extra ``ECGK_*``."""
    with tempfile.TemporaryDirectory(prefix="ecgk-bench-") as folder:
        database_url = database_url or f"sqlite:///{folder}/ecgk.db"
        upgrade(database_url)
        server_key = env.get("ECGK_API_KEY_SECRET") or secrets.token_hex(32)  # the server's, not this home's
        with session_scope(database_url) as session:
            key = create_api_key(session, Role.CLIENT, actor="benchmark", server_key=server_key.encode()).plaintext
        port = free_port()
        environment = {**os.environ, "ECGK_HOME": folder, "ECGK_DATABASE_URL": database_url,
                       "ECGK_USE_CUDA": "false", "ECGK_RATE_LIMIT_PER_S": "1000000",
                       "ECGK_RATE_LIMIT_BURST": "1000000", "ECGK_LOG_LEVEL": "WARNING",
                       "ECGK_API_KEY_SECRET": server_key, **env}
        base_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "ecg_k", "serve", "--model", str(model), "--port", str(port)]
        with running_server(command, f"{base_url}/health/ready", env=environment,
                            log_path=Path(folder) / "api.log") as process:
            yield BenchmarkApi(base_url, key, process.pid, database_url)
