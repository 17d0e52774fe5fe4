"""Atom feeds of newsworthy results and confirmed regressions, mounted by the application under /feeds."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
