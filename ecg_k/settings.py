"""The one settings object of ecg-k (environment variables with the prefix ``ECGK_``)."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as ``ECGK_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ECGK_", extra="ignore")

    home: Path = Field(default=Path(".ecgk"), description="Where the demo and default artefacts live.")
    workers: int = Field(default=2, ge=1, description="Default process-pool size for ingestion.")
    seed: int = Field(default=666, description="Default seed (the DIR template's balanced-split seed).")
    log_level: str = Field(default="INFO")
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data['home'] / 'ecgk.db'}",
        description="SQLAlchemy URL (postgresql+psycopg://… for PostgreSQL); SQLite under home by default.",
    )
    ecg_store: Path = Field(
        default_factory=lambda data: data["home"] / "ecg-store",
        description="Root of the content-addressed store of submitted ECGs.",
    )


@functools.cache
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
