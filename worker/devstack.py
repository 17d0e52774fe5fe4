"""`debflow dev`: the embedded Temporal dev server, PostgreSQL and a worker, supervised together."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from models.migrate import upgrade
from worker.connect import connect_temporal, dev_config, external_temporal
from worker.postgres import EmbeddedPostgres, free_port
from worker.settings import PROJECT_ROOT, Settings
from worker.temporal_dev import start_dev_server


def private_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings of a dev stack of its own (benchmarks, tests): temporal-dev.yaml's server settings on free
    ports, state in `state_dir`, nothing external."""
    config = yaml.safe_load((PROJECT_ROOT / "temporal-dev.yaml").read_text())
    config |= {"port": free_port(), "ui_port": free_port()}
    (state_dir / "temporal-dev.yaml").write_text(yaml.safe_dump(config))
    return Settings(
        state_dir=state_dir,
        temporal_dev_config=state_dir / "temporal-dev.yaml",
        postgres_port=free_port(),
        database_url=None,
        temporal_address=None,
        **overrides,
    )


class DevStack:
    """Starts what is not configured externally, records where it is, and stops it again."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int = 1,
        say: Callable[[str], None] = print,
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.say = say
        # Workers read their settings from the environment: the executor is passed on explicitly.
        self.worker_env = {"DEBFLOW_EXECUTOR": settings.executor, **(worker_env or {})}
        self.postgres: EmbeddedPostgres | None = None
        self.temporal: subprocess.Popen[bytes] | None = None
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.metrics_urls: dict[int, str] = {}  # worker pid → its Prometheus endpoint
        self.database_url = ""
        self.temporal_address = ""
        self.namespace = "default"
        self.ui_url: str | None = None

    def start(self) -> None:
        state = self.settings.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        if self.settings.stack_file.exists():
            self._stop_recorded()
        try:
            self._start_database(state)
            self._start_temporal(state, logs)
            self._record()
            asyncio.run(self._ensure_schedules())
            for index in range(self.workers):
                self.start_worker(logs / f"worker-{index}.log")
        except BaseException:
            self.stop()
            raise

    def _start_database(self, state: Path) -> None:
        if self.settings.database_url:
            self.database_url = self.settings.database_url
        else:
            self.postgres = EmbeddedPostgres(state / "postgres", self.settings.postgres_port)
            self.postgres.start()
            self.database_url = self.postgres.url
            self.say(f"PostgreSQL   {self.database_url} (embedded, data in {state / 'postgres'})")
        upgrade(self.database_url)

    def _start_temporal(self, state: Path, logs: Path) -> None:
        external = external_temporal(self.settings)
        if external is not None:
            self.temporal_address = external["target_host"]
            self.namespace = external.get("namespace", "default")
            self.say(f"Temporal     {self.temporal_address} (external)")
            return
        config = dev_config(self.settings)
        self.temporal = start_dev_server(config, state, logs / "temporal.log")
        self.temporal_address, self.namespace = config.address, config.namespace
        self.ui_url = config.ui_url()
        asyncio.run(self._wait_for_temporal(logs / "temporal.log"))
        added = asyncio.run(self._ensure_search_attributes())
        if added:
            self.say(f"Temporal     search attributes added to the existing database: {', '.join(added)}")
        self.say(f"Temporal     {self.temporal_address} (embedded dev server, db {state / config.db_file})")
        self.say(f"Temporal UI  {self.ui_url}")

    async def _wait_for_temporal(self, log: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.temporal is not None and self.temporal.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited; see {log}:\n" + log.read_text(errors="replace")[-1500:]
                )
            try:
                await connect_temporal({"target_host": self.temporal_address, "namespace": self.namespace})
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def _ensure_search_attributes(self) -> list[str]:
        """The dev server registers its search attributes only when it creates its database: a state
        directory from an older debflow lacks the ones added since. Returns the names it added."""
        from temporalio.api.enums.v1 import IndexedValueType
        from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

        from workflows import search_attributes as sa

        client = await connect_temporal({"target_host": self.temporal_address, "namespace": self.namespace})
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=self.namespace)
        )
        missing = {
            k.name: IndexedValueType.ValueType(int(k.indexed_value_type))
            for k in sa.ALL
            if k.name not in known.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=self.namespace, search_attributes=missing)
            )
        return sorted(missing)

    async def _ensure_schedules(self) -> None:
        from worker.expiry_schedule import EXPIRY_SCHEDULE_ID, ensure_expiry_schedule

        arguments = external_temporal(self.settings) or {
            "target_host": self.temporal_address,
            "namespace": self.namespace,
        }
        client = await connect_temporal(arguments)
        await ensure_expiry_schedule(client, self.settings)
        self.say(f"Schedule     {EXPIRY_SCHEDULE_ID} (expiry every {self.settings.expiry_interval_s:g} s)")
        from worker.notifier_start import ensure_notifier

        notifier = await ensure_notifier(client, self.settings)
        self.say(f"Notifier     {notifier.id} (webhooks to {len(self.settings.webhook_urls)} URL(s))")

    def _record(self) -> None:
        record = {
            "temporal_address": self.temporal_address,
            "namespace": self.namespace,
            "database_url": self.database_url,
            "pid": str(os.getpid()),
        }
        if self.ui_url:
            record["ui_url"] = self.ui_url
        self.settings.stack_file.write_text(json.dumps(record, indent=2))

    def _stop_recorded(self) -> None:
        """A stack file left by another `debflow dev`: refuse if it still runs, else forget it."""
        pid = self.settings.dev_stack().get("pid")
        if pid and pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                pass
            else:
                raise RuntimeError(f"`debflow dev` already runs (pid {pid}); stop it first")
        self.settings.stack_file.unlink(missing_ok=True)

    def start_worker(self, log: Path) -> subprocess.Popen[bytes]:
        """A `debflow worker` process with its own Prometheus endpoint on a free local port."""
        address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            **self.worker_env,
            "DEBFLOW_STATE_DIR": str(self.settings.state_dir.resolve()),
            "DEBFLOW_METRICS_ADDRESS": address,
        }
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "client", "worker"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.worker_processes.append(process)
        self.metrics_urls[process.pid] = f"http://{address}/metrics"
        return process

    def restart_dead_workers(self) -> list[int]:
        """Replace worker processes that exited; returns the pids that were replaced."""
        dead = [p for p in self.worker_processes if p.poll() is not None]
        for process in dead:
            self.worker_processes.remove(process)
            self.start_worker(self.settings.state_dir.resolve() / "logs" / f"worker-{process.pid}.log")
        return [p.pid for p in dead]

    def restart_temporal(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the embedded dev server with `sig` and start it again on the same ports and db file."""
        state = self.settings.state_dir.resolve()
        if self.temporal is not None:
            _terminate(self.temporal, sig, 20)
        self.temporal = start_dev_server(dev_config(self.settings), state, state / "logs" / "temporal.log")
        asyncio.run(self._wait_for_temporal(state / "logs" / "temporal.log"))

    def restart_postgres(self, sig: signal.Signals = signal.SIGQUIT) -> None:
        """Stop the embedded PostgreSQL with `sig` (SIGQUIT: immediate, crash recovery at start) and start
        it again on the same port and data directory."""
        if self.postgres is None:
            raise RuntimeError("PostgreSQL is external: nothing to restart")
        process = self.postgres.process
        if process is not None and process.poll() is None:
            _terminate(process, sig, 30)
        self.postgres.start()

    def stop(self) -> None:
        for process in self.worker_processes:
            _terminate(process, signal.SIGTERM, 20)
        self.worker_processes.clear()
        if self.temporal is not None:
            _terminate(self.temporal, signal.SIGINT, 20)
            self.temporal = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.settings.dev_stack().get("pid") == str(os.getpid()):
            self.settings.stack_file.unlink(missing_ok=True)


def _terminate(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
