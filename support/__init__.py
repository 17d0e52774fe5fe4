"""Helpers that tests/ and bench/ share: synthetic Debian suites and the chaos harness (never imported by
the product packages)."""
