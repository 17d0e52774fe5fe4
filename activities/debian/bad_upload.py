"""The one exception for unusable input, shared by the readers and checkers of uploads."""


class BadUpload(ValueError):
    """The upload is unusable; the message says why in one line."""
