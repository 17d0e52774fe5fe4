"""Campaign activities: plan, claim references, run tests (simulated or from the archive), record verdicts."""
