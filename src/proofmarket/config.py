"""One settings object, read from the environment (prefix PROOFMARKET_) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROOFMARKET_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path.home() / ".proofmarket", description="data folder: store, SRS cache, jobs")
    srs_file: Path | None = Field(default=None, description="ceremony SRS file; unset = dev SRS (devnet only)")
    proof_timeout_s: float = Field(default=600.0, gt=0, description="a proof running longer is stopped")
    max_model_bytes: int = Field(default=100 * 1024 * 1024, gt=0)

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def srs_dir(self) -> Path:
        return self.home / "srs"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"
