"""Where the command line writes: a terminal gets its width and a pager, a pipe gets whole lines."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.rule import Rule

# Piped or redirected output is read by programs and by people with wide windows: rich's default of
# 80 columns would wrap and cut table cells (log ids, test names). Tables only take what they need.
UNBOUNDED = 10_000


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNBOUNDED)


def rule(console: Console, title: str = "") -> None:
    """A horizontal rule: the terminal's width, or a readable one where the width is unbounded."""
    console.print(Rule(title), width=min(console.width, 110))


@contextlib.contextmanager
def paged(console: Console) -> Iterator[None]:
    """Everything printed inside goes through $PAGER (less by default) on a terminal."""
    if not console.is_terminal:
        yield
        return
    # Without styles: less shows escape codes unless it is told -R.
    with console.pager(styles=False):
        yield


def print_text(console: Console, text: str) -> None:
    """Tool output (a log) as it is: raw on a pipe, without markup or highlighting on a terminal."""
    if text and not text.endswith("\n"):
        text += "\n"
    if console.is_terminal:
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
    else:
        console.file.write(text)
