"""The ``yamcap`` command line: a thin shell over the library, one module per kind of command.

Only typer and the standard library are imported at start-up; TensorFlow loads when a
command needs it, so ``yamcap --help`` answers at once. :mod:`.common` holds the app and what
every command shares; importing the command modules registers their commands, in the order
``--help`` lists them.
"""

from __future__ import annotations

from . import counting, data, models, review  # noqa: F401 - registers the commands
from .common import app, main

__all__ = ["app", "main"]
