"""The `debflow` command line: one Typer app, its commands registered from the modules that hold them."""

from __future__ import annotations

import os
import sys

import typer

from client import (
    campaign_commands,
    data_commands,
    keys_commands,
    rebuild_commands,
    results_commands,
    run_commands,
    serve_commands,
    stack_commands,
    suite_commands,
)
from worker.context import Context
from worker.settings import Settings

app = typer.Typer(
    help="Build, lint and test Debian uploads on Temporal.", no_args_is_help=True, add_completion=False
)


@app.callback()
def invocation(ctx: typer.Context) -> None:
    # The composition root of the invocation: the settings are read here once, and what is made from
    # them (clients, engines, stores) is closed when the command ends.
    context = Context(Settings())
    ctx.obj = context
    ctx.call_on_close(context.close)


# In the order `debflow --help` lists them.
for command in (
    stack_commands.dev,
    stack_commands.demo,
    run_commands.submit,
    run_commands.report,
    run_commands.retry,
    run_commands.close,
    run_commands.watch,
    campaign_commands.campaign,
    rebuild_commands.rebuild,
    stack_commands.worker,
    stack_commands.status,
    stack_commands.migrate,
):
    app.command()(command)
data_commands.register(app)
results_commands.register(app)
suite_commands.register(app)
serve_commands.register(app)
keys_commands.register(app)


def main() -> None:
    """The console script: exits without interpreter finalisation, which can abort (SIGABRT) while
    the Temporal client's native threads still run."""
    try:
        app()
        code: object = 0
    except SystemExit as e:
        code = e.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
