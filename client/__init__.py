"""Programmatic starts, progress, reports and the `debflow` command line."""
