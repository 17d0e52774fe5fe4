"""debflow's settings, read once from the environment (prefix DEBFLOW_) and passed down."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
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


def _renamed(old: str) -> AliasChoices:
    """The environment variables of a field renamed to carry its unit: DEBFLOW_<OLD>_S, and DEBFLOW_<OLD>
    as deployments written before the rename set it (the new name wins when both are set)."""
    return AliasChoices(f"DEBFLOW_{old.upper()}_S", f"DEBFLOW_{old.upper()}")


class Settings(BaseSettings):
    """Every knob debflow has; see docs/operations.md "Configuration"."""

    # populate_by_name: a renamed field is set by its name in code, by its new or old variable in the
    # environment (see _renamed).
    model_config = SettingsConfigDict(env_prefix="DEBFLOW_", extra="ignore", populate_by_name=True)

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
    # `unshare` isolates builds and tests (docs/pipeline.md "Executors"); `host` is for development and
    # trusted packages only.
    executor: Literal["unshare", "host"] = "unshare"
    mirror: str = Field(default="http://deb.debian.org/debian", pattern=r"^(https?|file)://[^\s]+$")
    environment_max_age_days: float = Field(default=7, gt=0)
    # The release whose environment tests a suite of another mirror (a local archive) with the unshare
    # executor (activities/tools/testbeds.py).
    testbed_base_suite: str = Field(default="bookworm", pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    postgres_port: int = 54329
    # host:port of this worker's Prometheus endpoint (SDK and debflow metrics); unset: none.
    metrics_address: str | None = None
    # Temporal priority keys (1 first … 5 last): uploads overtake campaigns.
    upload_priority: int = Field(default=2, ge=1, le=5)
    campaign_priority: int = Field(default=4, ge=1, le=5)

    suites: list[str] = Field(default_factory=lambda: list(DEBIAN_SUITES))
    architectures: list[str] = Field(default_factory=lambda: list(DEBIAN_ARCHITECTURES))
    max_upload_bytes: int = 512 * 1024 * 1024
    max_unpacked_bytes: int = Field(default=4 * 1024**3, ge=1)
    # Members of a source package's archives together, checked while listing, before any extraction.
    max_archive_members: int = Field(default=1_000_000, ge=1)
    max_metadata_bytes: int = Field(default=64 * 1024, ge=1024)

    # Timeouts in seconds (docs/retries.md "Timeouts"): the configured ones are the ceilings; task
    # history lowers them to max(floor, factor x p95) once a key has enough samples.
    build_timeout_s: float = Field(default=3 * 3600, gt=0, validation_alias=_renamed("build_timeout"))
    lintian_timeout_s: float = Field(default=3600, gt=0, validation_alias=_renamed("lintian_timeout"))
    autopkgtest_timeout_s: float = Field(
        default=2 * 3600, gt=0, validation_alias=_renamed("autopkgtest_timeout")
    )
    heartbeat_timeout_s: float = Field(default=60, gt=0, validation_alias=_renamed("heartbeat_timeout"))
    heartbeat_interval_s: float = Field(default=5, gt=0, validation_alias=_renamed("heartbeat_interval"))
    timeout_floor_s: float = Field(default=600, gt=0)
    timeout_history_factor: float = Field(default=4.0, ge=1)
    timeout_history_min_samples: int = Field(default=3, ge=1)
    # Read by nothing since upload runs end with their tasks; kept so that deployments setting it still
    # start (runs started before then had such a retry window).
    retry_window_s: float = Field(default=24 * 3600, ge=0)

    # Fault injection for chaos tests (activities/faults.py): off unless the rate is above 0.
    fault_after_store_rate: float = Field(default=0.0, ge=0, le=1)
    fault_activities: str = ""  # comma-separated activity types; empty: every hook
    fault_journal: Path | None = None
    # What this worker process polls (docs/operations.md "Worker pools"): control, lintian, build[:ARCH],
    # test[:ARCH], comma-separated, or `all` (every capability of this host). Slots per capability queue;
    # unset ones default to max_concurrent_activities.
    capabilities: str = "all"
    max_concurrent_activities: int = Field(default=4, ge=1)
    control_slots: int | None = Field(default=16, ge=1)
    build_slots: int | None = Field(default=None, ge=1)
    test_slots: int | None = Field(default=None, ge=1)
    lintian_slots: int | None = Field(default=None, ge=1)
    # How long a build or test waits for a worker of its queue before it errors (no worker serves
    # that architecture); campaign tests wait as long as their campaign runs.
    queue_wait_s: float = Field(default=24 * 3600, gt=0)
    artifact_expiration_days: int = 30
    # A campaign run whose file the mirror lacks tries again after backoff, 2 x backoff, … (a mirror may
    # be mid-sync); after this many tries its target is UNTESTABLE.
    missing_file_tries: int = Field(default=4, ge=1)
    missing_file_backoff_s: float = Field(default=60, gt=0)

    # debci's API (docs/debci-api.md): a temporary failure (testbed, exit 16 and other codes) is run
    # again after backoff, 2 x backoff, ...; reported `tmpfail` after this many tries.
    debci_max_tests_per_call: int = Field(default=30_000, ge=1)
    debci_tmpfail_tries: int = Field(default=3, ge=1)
    debci_tmpfail_backoff_s: float = Field(default=60, gt=0)
    debci_tests_in_flight: int = Field(default=400, ge=1, le=900)
    debci_retries_per_hour: int = Field(default=100, ge=1)
    debci_job_keep_days: int = Field(default=90, ge=1)
    # An identical request joins a job decided this recently instead of running again (not a tmpfail).
    debci_dedup_window_s: float = Field(default=24 * 3600, ge=0)

    # Retention and expiry (docs/retention.md).
    task_history_keep: int = Field(default=5, ge=1)
    qa_results_keep: int = Field(default=5, ge=1)
    removed_item_full_history_days: int = Field(default=7, ge=0)
    removed_item_metadata_days: int = Field(default=30, ge=0)
    expiry_interval_s: float = Field(default=3600, gt=0)
    expiry_batch_size: int = Field(default=1000, ge=1, le=1000)
    expiry_lock_timeout_ms: int = Field(default=500, ge=1)
    expiry_statement_timeout_s: float = Field(default=30, gt=0)
    orphan_blob_grace_s: float = Field(default=6 * 3600, ge=0)

    # Webhooks (docs/notifications.md): every newsworthy result and confirmed regression is POSTed to
    # each URL (a JSON list), signed with HMAC-SHA256 under the secret.
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    notify_poll_interval_s: float = Field(default=30, gt=0)
    webhook_timeout_s: float = Field(default=30, gt=0)
    webhook_retry_max_interval_s: float = Field(default=600, gt=0)

    @model_validator(mode="after")
    def _webhooks_signed(self) -> Settings:
        bad = [u for u in self.webhook_urls if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", u)]
        if bad:
            raise ValueError(f"DEBFLOW_WEBHOOK_URLS: not an http(s) URL: {bad[0]!r}")
        if self.webhook_urls and not (self.webhook_secret and self.webhook_secret.get_secret_value()):
            raise ValueError(
                "DEBFLOW_WEBHOOK_URLS is set but DEBFLOW_WEBHOOK_SECRET is not: webhooks are signed"
            )
        return self

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
