"""What the benchmarks share: where the real bookworm indices are."""

from __future__ import annotations

from worker.settings import PROJECT_ROOT

BOOKWORM = PROJECT_ROOT.parent / "shared" / "data" / "debian-bookworm"
