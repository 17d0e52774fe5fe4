"""`debflow db-stats` and `debflow expire`: the operators' view of write volume, locks and retention."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from activities.storage.db_stats import DatabaseStats, database_stats, reset_stats
from client.command_support import console, context_of, fail
from models.expiry_payloads import ExpiryPlan
from worker.connect import NotConfigured
from worker.context import Context

if TYPE_CHECKING:  # the engine is made by the composition root (worker/context.py)
    from sqlalchemy import Engine


def _engine(context: Context) -> Engine:
    try:
        return context.engine
    except NotConfigured as e:
        raise fail(str(e)) from None


def db_stats(
    ctx: typer.Context,
    reset: Annotated[bool, typer.Option("--reset", help="zero the counters after printing them")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Per table inserts, updates (HOT share), deletes and dead tuples since the last reset; lock waits."""
    engine = _engine(context_of(ctx))
    stats = database_stats(engine)
    if reset:
        reset_stats(engine)
    if as_json:
        print(stats.model_dump_json(indent=2))
    else:
        _print_stats(stats)
    if reset:
        console.print("counters reset")


def _print_stats(stats: DatabaseStats) -> None:
    since = f"{stats.since:%Y-%m-%d %H:%M:%S %Z}" if stats.since else "the cluster's creation"
    table = Table(title=f"table writes since {since}", title_justify="left")
    for column in ("table", "inserts", "updates", "HOT", "deletes", "live", "dead"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in stats.tables:
        hot = f"{t.hot_ratio:.0%}" if t.hot_ratio is not None else "-"
        table.add_row(
            t.table, f"{t.inserts:,}", f"{t.updates:,}", hot, f"{t.deletes:,}", f"{t.live:,}", f"{t.dead:,}"
        )
    console.print(table)
    console.print(f"commits {stats.commits:,}, rollbacks {stats.rollbacks:,}, deadlocks {stats.deadlocks:,}")
    if not stats.lock_waits:
        console.print("no session waits for a lock")
        return
    waits = Table(title="lock waits (pg_blocking_pids)", title_justify="left")
    for column in ("pid", "blocked by", "waits for", "for s", "query", "blockers"):
        waits.add_column(column)
    for w in stats.lock_waits:
        blocked_by = ", ".join(map(str, w.blocked_by))
        waits.add_row(str(w.pid), blocked_by, w.waits_for or "", f"{w.seconds:.1f}", w.query, w.blockers)
    console.print(waits)


def expire(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would go and why the rest stays")
    ] = False,
    schedule: Annotated[
        bool, typer.Option("--schedule", help="create or update the expiry schedule")
    ] = False,
    limit: Annotated[int, typer.Option(help="rows to list per kind (with --dry-run)")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan or result as JSON")] = False,
) -> None:
    """Run expiry now and wait for it; or only show its plan, or write its schedule."""
    context = context_of(ctx)
    settings = context.settings
    if dry_run:
        _dry_run(context, limit, as_json)
        return

    async def go() -> str:
        from worker.expiry_schedule import EXPIRY_SCHEDULE_ID, ensure_expiry_schedule, run_expiry_now

        client = await context.temporal()
        if schedule:
            await ensure_expiry_schedule(client, settings)
            every = f"{settings.expiry_interval_s:g} s"
            return f"schedule {EXPIRY_SCHEDULE_ID}: expiry every {every}, overlap policy skip"
        result = await run_expiry_now(client, settings)
        return result.model_dump_json(indent=2) if as_json else _summary(result.model_dump())

    try:
        console.print(asyncio.run(go()), highlight=False)
    except NotConfigured as e:
        raise fail(str(e)) from None


def _summary(result: dict[str, int]) -> str:
    return "expiry done: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.items())


def _dry_run(context: Context, limit: int, as_json: bool) -> None:
    from activities.storage.expiry_plan import plan_expiry
    from worker.expiry_schedule import retention_policy

    _engine(context)
    plan = plan_expiry(
        context.sessions,
        retention_policy(context.settings),
        history_keep=context.settings.task_history_keep,
        limit=limit,
    )
    if as_json:
        print(plan.model_dump_json(indent=2))
        return
    _print_plan(plan)


def _print_plan(plan: ExpiryPlan) -> None:
    console.print(f"expiry plan at {plan.now:%Y-%m-%d %H:%M:%S %Z} (dry run: nothing locked or written)")
    console.print(
        f"  task history rows beyond the keep-set: {plan.history_rows_beyond_keep:,} (pruned on insert)\n"
        f"  QA results to soft-remove: {plan.qa_results_to_remove:,}; kept for running workflows: "
        f"{plan.qa_results_kept_live:,}\n"
        f"  removed collection items to delete: {plan.items_to_delete:,}; in their metadata-only period: "
        f"{plan.items_metadata_only:,}\n"
        f"  expired artifacts: {plan.artifacts_expired:,}; to delete: {plan.artifacts_to_delete:,}; "
        f"kept: {plan.artifacts_kept:,} {json.dumps(plan.kept_reasons) if plan.kept_reasons else ''}\n"
        f"  running workflows as recorded by the last expiry run: {plan.running_workflows_recorded:,}",
        highlight=False,
    )
    for title, rows in (("would remove", plan.remove), ("keeps", plan.keep)):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for column in ("kind", "id", "what", "why"):
            table.add_column(column)
        for row in rows:
            table.add_row(row.kind, str(row.id), row.what, row.why)
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("db-stats")(db_stats)
    app.command()(expire)
