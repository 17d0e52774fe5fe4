"""debflow's settings, read once from the environment (prefix DEBFLOW_) and passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Release architectures and the ports most often built for them; an unknown name is bad input.
DEBIAN_ARCHITECTURES = (
    *("all", "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x"),
    *("alpha", "hppa", "ia64", "loong64", "m68k", "powerpc", "ppc64", "sh4", "sparc64", "x32"),
    *("hurd-amd64", "hurd-i386"),
)

DEBIAN_SUITES = (
    *("bookworm", "trixie", "forky", "sid", "unstable", "testing", "stable", "oldstable"),
    *("experimental", "bookworm-backports", "trixie-backports"),
)


class Settings(BaseSettings):
    """Every knob debflow has; see README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="DEBFLOW_", extra="ignore")

    state_dir: Path = Field(default=PROJECT_ROOT / ".debflow")
    temporal_dev_config: Path = Field(default=PROJECT_ROOT / "temporal-dev.yaml")

    # External services. Unset: `debflow dev` starts embedded ones and records them in the state directory.
    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    temporal_profile: str | None = None

    artifact_store: Path | None = None
    work_dir: Path | None = None
    task_queue: str = "debflow"
    executor: Literal["host"] = "host"
    postgres_port: int = 54329

    suites: list[str] = Field(default_factory=lambda: list(DEBIAN_SUITES))
    architectures: list[str] = Field(default_factory=lambda: list(DEBIAN_ARCHITECTURES))
    max_upload_bytes: int = 512 * 1024 * 1024

    # Timeouts in seconds; issue 5 refines these from task history.
    build_timeout: float = 3 * 3600
    lintian_timeout: float = 3600
    autopkgtest_timeout: float = 2 * 3600
    heartbeat_timeout: float = 60
    heartbeat_interval: float = 5
    max_concurrent_activities: int = 4
    artifact_expiration_days: int = 30

    # Retention and expiry (README "Retention and expiry").
    task_history_keep: int = Field(default=5, ge=1)
    qa_results_keep: int = Field(default=5, ge=1)
    removed_item_full_history_days: int = Field(default=7, ge=0)
    removed_item_metadata_days: int = Field(default=30, ge=0)
    expiry_interval_s: float = Field(default=3600, gt=0)
    expiry_batch_size: int = Field(default=1000, ge=1, le=1000)
    expiry_lock_timeout_ms: int = Field(default=500, ge=1)
    expiry_statement_timeout_s: float = Field(default=30, gt=0)
    orphan_blob_grace_s: float = Field(default=6 * 3600, ge=0)

    @property
    def store_dir(self) -> Path:
        return self.artifact_store or self.state_dir / "artifacts"

    @property
    def scratch_dir(self) -> Path:
        return self.work_dir or self.state_dir / "work"

    @property
    def stack_file(self) -> Path:
        """Where `debflow dev` records the addresses of the services it started."""
        return self.state_dir / "dev-stack.json"

    def dev_stack(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.stack_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data
