"""The project's exception types: one base class, so callers can catch everything we raise."""


class YamcapError(Exception):
    """Base class for errors that yamcap reports to the user as one line."""


class AudioError(YamcapError):
    """An audio file could not be used; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(YamcapError):
    """A model (backbone or trained head) could not be loaded or does not fit the request."""


class ConfigError(YamcapError):
    """A configuration file or override is invalid."""
