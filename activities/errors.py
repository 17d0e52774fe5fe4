"""Turning the activities' own exceptions into Temporal errors with the right retry behaviour."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio.exceptions import ApplicationError, CancelledError

from activities.debian.dsc import BadUpload
from activities.tools.executors import InfrastructureError, UnsupportedArchitecture
from activities.tools.process import Cancelled, ToolMissing


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Deterministic problems become non-retryable errors with a clear message; infrastructure faults
    stay retryable, named as such."""
    try:
        yield
    except (ToolMissing, UnsupportedArchitecture, BadUpload, LookupError) as e:
        raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
    except InfrastructureError as e:
        raise ApplicationError(str(e), type="InfrastructureError") from e
    except Cancelled as e:
        raise CancelledError(str(e)) from e
