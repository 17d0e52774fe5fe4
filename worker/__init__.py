"""The composition root: settings, clients, database engine, workers and the embedded dev stack."""
