"""The one settings object of ecg-k (environment variables with the prefix ``ECGK_``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as ``ECGK_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ECGK_", extra="ignore")

    home: Path = Field(default=Path(".ecgk"), description="Where the demo and default artefacts live.")
    workers: int = Field(default=2, ge=1, description="Default process-pool size for ingestion.")
    seed: int = Field(default=666, description="Default seed (the DIR template's balanced-split seed).")
    log_level: str = Field(default="INFO")
    log_format: Literal["plain", "json"] = Field(
        default="plain", description="Service log lines: plain text, or one JSON object per line (containers)."
    )
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data['home'] / 'ecgk.db'}",
        description="SQLAlchemy URL (postgresql+psycopg://… for PostgreSQL); SQLite under home by default.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite PRAGMA synchronous (WAL mode). FULL: a commit is on disk before it returns (durable "
        "against power loss). NORMAL: durable against a process crash, not an OS crash or power loss; "
        "saves one fsync per commit.",
    )
    ecg_store: Path = Field(
        default_factory=lambda data: data["home"] / "ecg-store",
        description="Root of the content-addressed store of submitted ECGs.",
    )

    # Inference service (``ecgk serve``)
    host: str = Field(default="127.0.0.1", description="Interface the API listens on (loopback by default).")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port of the API.")
    model_path: Path | None = Field(
        default=None, description="model.onnx to serve (its model_card.json beside it); the champion if unset."
    )
    api_key_header: str = Field(default="X-API-Key", description="Request header that carries the API key.")
    api_key_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="Server secret that keys the API-key hashes (HMAC-SHA256); at least 32 characters. Unset: "
        "a random one kept in <home>/api-key.secret. Every process that creates or checks keys shares it; "
        "changing it invalidates every key.",
    )
    rate_limit_per_s: float = Field(default=20.0, gt=0, description="Sustained requests per second per key.")
    rate_limit_burst: int = Field(default=40, ge=1, description="Requests a key may send at once (bucket size).")
    max_body_bytes: int = Field(default=10 * 2**20, ge=1024, description="Largest request body accepted (413).")
    max_header_bytes: int = Field(
        default=16 * 2**10, ge=1024, le=2**20,
        description="Largest request head (request line and headers) accepted; a larger one gets 431.")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a connection has to send a complete request head (408 after).")
    body_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Time a request has to send its whole body once its head is in (408 after); 60 s lets the "
        "largest body through at 175 kB/s.")
    auth_failure_rate_per_s: float = Field(
        default=1.0, gt=0, description="Sustained failed authentications per second allowed per source address.")
    auth_failure_burst: int = Field(
        default=20, ge=1, description="Failed authentications a source may make at once before it gets 429.")
    auth_blocked_delay_s: float = Field(
        default=1.0, ge=0, le=30,
        description="How long the 429 to a source that spent its failed authentications is held back.")
    batch_max: int = Field(default=32, ge=1, description="Most ECGs in one batch request.")
    interval_coverage: float = Field(default=0.9, gt=0, lt=1, description="Coverage of served intervals.")
    ort_intra_op_threads: int = Field(default=1, ge=1, description="ONNX Runtime threads within one run.")
    ort_inter_op_threads: int = Field(default=1, ge=1, description="ONNX Runtime threads across graph nodes.")
    use_cuda: bool = Field(default=True, description="Ask ONNX Runtime for CUDA when it is installed.")
    model_poll_s: float = Field(
        default=10.0, ge=0,
        description="How often the service checks the registry for a new champion and swaps it in without a "
        "restart (0: never; a model pinned with --model is never swapped).",
    )


@functools.cache
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
