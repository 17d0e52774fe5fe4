"""Deterministic orchestration: what runs, in which order, with which timeouts and retries."""
