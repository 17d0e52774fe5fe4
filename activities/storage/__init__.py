"""The artifact store, task history, expiry and retention, and what reads them."""
