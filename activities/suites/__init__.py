"""Importing a suite: its Release (and signature), its indices, its collection items."""
