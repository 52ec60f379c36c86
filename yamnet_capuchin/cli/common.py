"""What every ``yamcap`` command shares: the typer app, the shared options, configuration,
one-line errors (:func:`_guarded`) and the options of commands that run a model
(:class:`ModelRun`). The commands live in the sibling modules, by what they work on."""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ..config import Config, SynthParams

app = typer.Typer(
    name="yamcap",
    help=(
        "Find and count Capuchinbird calls in forest recordings with a frozen YAMNet and a small "
        "trained head (or the original notebook's spectrogram CNN, as a baseline).\n\n"
        "Counting and prediction with the shipped model need no TensorFlow and no download: it is "
        "one TFLite file in the package. Training, export, evaluation and --yamnet need "
        "pip install 'yamnet-capuchin[train]'; they load YAMNet from $YAMCAP_YAMNET (a SavedModel "
        "folder, a .tflite file or a TF-Hub URL); offline, point it at a local copy:  "
        "export YAMCAP_YAMNET=/path/to/yamnet"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


def _tidy_help_metavars() -> None:
    """Typer's help shows a flag as ``--plots <bool>`` and a required argument in the usage
    line as ``{paths}...``: show flags bare and arguments as ``PATHS...`` (click's style).
    Help text only; parsing is untouched, and a typer without these hooks is left as it is."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover
        return
    if hasattr(TyperOption, "display_type_rich") and not getattr(TyperOption, "_yamcap_tidy", False):
        shown = TyperOption.display_type_rich

        def display_type_rich(self, ctx):
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        TyperOption.display_type_rich = display_type_rich
        TyperOption._yamcap_tidy = True
    if hasattr(TyperArgument, "_usage_display_name"):
        def _usage_display_name(self):
            name = (self.metavar or self.name or "").upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = _usage_display_name


_tidy_help_metavars()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("yamnet-capuchin")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from .. import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"yamcap {_package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Show yamcap's version and exit."),
) -> None:
    pass


_CFG = Config()
_SP = SynthParams()  # synth's defaults, written once in config.py


def _default(dotted: str) -> str:
    """``[config KEY: VALUE]`` for a help text: the default as config.py writes it."""
    value = _CFG
    for part in dotted.split("."):
        value = getattr(value, part)
    return f"[config {dotted}: {value}]"
ConfigOpt = typer.Option(None, "--config", "-c", rich_help_panel="Configuration", help="TOML config file; CLI options override it. Every default, commented: yamnet_capuchin/configs/default.toml (installed with the package).")
SetOpt = typer.Option(None, "--set", rich_help_panel="Configuration", help="Override any config value, e.g. --set head.dropout=0.5 (repeatable).")
YamnetOpt = typer.Option(None, "--yamnet", rich_help_panel="Backbone", help="YAMNet handle: TF-Hub URL, SavedModel folder or .tflite file [env: YAMCAP_YAMNET]. With no --model, --yamnet or --runtime runs the shipped head on this YAMNet instead of the packaged TFLite file (needs [train]).")
RuntimeOpt = typer.Option(None, "--runtime", rich_help_panel="Backbone", help="YAMNet runtime: savedmodel or tflite (default: from the handle).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
DataOpt = typer.Option(..., "--data", "-d", help="Kaggle-layout data folder (Parsed_Capuchinbird_Clips/, Parsed_Not_Capuchinbird_Clips/, Forest Recordings/).")
ModelOpt = typer.Option(None, "--model", "-m", help="Model directory: trained, or an export (default: the model shipped with yamcap).")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _setup_runtime() -> None:
    """Quiet TensorFlow and show our warnings as one line each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "YamcapWarning":
            typer.secho(f"warning: {message}", fg="yellow", err=True)

    warnings.showwarning = show
    warnings.filterwarnings("ignore", module="keras.*")
    warnings.filterwarnings("ignore", module="tensorflow.*")


def _load_config(config: Optional[Path], sets: Optional[List[str]], overrides: dict):
    from ..config import Config

    pairs = {}
    for item in sets or []:
        if "=" not in item:
            _fail(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    pairs.update({k: v for k, v in overrides.items() if v is not None})
    return Config.load(config, pairs)


def _requested_backend(config: Optional[Path], sets: Optional[List[str]]) -> Optional[str]:
    """The audio backend the user asked for (--set, else the --config file), or None: then a
    model is run with the backend it was trained with, not with the default one."""
    for item in reversed(sets or []):
        key, _, value = item.partition("=")
        if key.strip() == "audio.backend":
            return value.strip()
    if config is not None:
        from ..config import tomllib

        with open(config, "rb") as fh:  # Config.load has already read and checked this file
            return tomllib.load(fh).get("audio", {}).get("backend")
    return None


def _load_detector(model, yamnet, runtime, cfg, config: Optional[Path], sets: Optional[List[str]]):
    """Load a model; ``cfg`` takes over its backbone and audio backend (unless one was asked for)."""
    from ..detectors import load_model

    detector = load_model(model, yamnet=yamnet, runtime=runtime, audio_backend=_requested_backend(config, sets))
    cfg.backbone, cfg.audio.backend = detector.config.backbone, detector.config.audio.backend
    return detector


def _guard(fn, name: str = "this command"):
    """Run a command body (the command ``name``); YamcapError, or an optional dependency not
    installed -> one red line and exit 2; Ctrl-C -> exit 130."""
    from ..errors import YamcapError, missing_extra

    try:
        return fn()
    except YamcapError as exc:
        _fail(str(exc))
    except ImportError as exc:
        message = missing_extra(exc, name)
        if message is None:
            raise
        _fail(message)
    except KeyboardInterrupt:
        typer.secho("interrupted: no partial output was left", fg="yellow", err=True)
        raise typer.Exit(130)


def _guarded(command):
    """A command's set-up and errors, once for all: TensorFlow quiet and our warnings as one line
    each (:func:`_setup_runtime`), then the command under :func:`_guard`. The signature, and so
    the options typer reads from it, stay the command's own."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        _setup_runtime()
        return _guard(lambda: command(*args, **kwargs), f"yamcap {command.__name__.replace('_', '-')}")

    return run


class ModelRun:
    """The options every command that runs a model shares (``--config``, ``--set``, ``--yamnet``,
    ``--runtime``, ``-q``), handed to it as one value by :func:`_runs_a_model`."""

    def __init__(self, config: Optional[Path] = None, sets: Optional[List[str]] = None, yamnet: Optional[str] = None,
                 runtime: Optional[str] = None, quiet: bool = False):
        self.config, self.sets, self.yamnet, self.runtime, self.quiet = config, sets, yamnet, runtime, quiet

    def configuration(self, overrides: dict):
        """The resolved Config: defaults, then --config, then --set, then the command's ``overrides``."""
        return _load_config(self.config, self.sets, overrides)

    def detector(self, model, cfg):
        """The model, loaded with --yamnet / --runtime; ``cfg`` takes over its backbone and audio backend."""
        return _load_detector(model, self.yamnet, self.runtime, cfg, self.config, self.sets)

    @property
    def audio_backend(self) -> Optional[str]:
        return _requested_backend(self.config, self.sets)


_MODEL_RUN_OPTIONS = (("config", Optional[Path], ConfigOpt), ("sets", Optional[List[str]], SetOpt),
                      ("yamnet", Optional[str], YamnetOpt), ("runtime", Optional[str], RuntimeOpt),
                      ("quiet", bool, QuietOpt))


def _runs_a_model(command):
    """Add the :class:`ModelRun` options after ``command``'s own and pass them to it as its
    ``run`` argument: declared once here instead of in every such command."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "run"]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
              for name, kind, option in _MODEL_RUN_OPTIONS]

    @functools.wraps(command)
    def with_run(*args, **kwargs):
        run = ModelRun(**{name: kwargs.pop(name) for name, _, _ in _MODEL_RUN_OPTIONS})
        return command(*args, run=run, **kwargs)

    with_run.__signature__ = inspect.Signature(own + shared)
    return with_run


def _report_failures(failures) -> None:
    for path, reason in failures:
        typer.secho(f"failed: {path}: {reason}", fg="red", err=True)


def main() -> None:  # pragma: no cover
    app()
