"""The upload pipeline's activities: describe, build, lint and test an upload; resume; timeouts."""
