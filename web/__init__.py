"""The results site: read-only pages, JSON and Atom feeds over task history, artifacts and QA results."""
