"""Configuration: dataclasses mirrored by TOML files in ``configs/``.

Every value has a default here; a TOML file overrides some of them, and the CLI overrides
single values as ``section.key=value``. The resolved configuration is saved with every
trained model and report (``config.toml``), so a result can be reproduced.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

DEFAULT_YAMNET_HANDLE = "https://tfhub.dev/google/yamnet/1"
# frames per invoke of an exported TFLite model (yamcap export): 16 ran fastest of 1, 16, 64, 256 (docs/export.md)
DEFAULT_BLOCK_FRAMES = 16
DEFAULT_CALIBRATION_BLOCKS = 200  # blocks of audio an int8 export is calibrated on
FAMILY_FOLDS = 5  # folds of whole recording families when cross-validating on annotated recordings
MIN_IOU = 0.3  # a detection matches a call at intersection-over-union >= this (DCASE few-shot convention)


@dataclass(frozen=True)
class SynthParams:
    """Settings of `yamcap synth` (synthetic soundscapes with known calls); not part of the TOML config."""

    n_files: int = 10
    seed: int = 0
    duration_s: float = 180.0
    snr_db_min: float = -3.0
    snr_db_max: float = 15.0
    density: str = "mixed"
    calls_min: int = 0
    calls_max: int = 12
    distractors_max: int = 6
    dense_gap_s: tuple[float, float] = (0.3, 2.0)
    sparse_gap_min_s: float = 4.0


@dataclass
class AudioConfig:
    backend: str = "soundfile"  # "soundfile" (soundfile + soxr) or "tfio" (tensorflow-io)
    block_seconds: float = 120.0  # block length when streaming long files


@dataclass
class BackboneConfig:
    name: str = "yamnet"  # "yamnet", "birdnet" (the [birdnet] extra; non-commercial model) or "cnn"
    # URL, SavedModel directory or .tflite file; the env var YAMCAP_YAMNET overrides an empty value
    handle: str = ""
    runtime: str = "auto"  # "auto" (from the handle), "savedmodel" or "tflite"


@dataclass
class SplitConfig:
    train_fraction: float = 0.7  # fractions of *sources* (recordings), per class
    val_fraction: float = 0.1
    test_fraction: float = 0.2


@dataclass
class DataConfig:
    # Call-free forest recordings (stems in the data's forest folder) cut into negative
    # segments: the training clips hold little forest background, which causes false events.
    backgrounds: list = field(default_factory=lambda: ["recording_01", "recording_49", "recording_91"])
    background_clip_s: float = 3.0
    # Folders of Raven tables (yamnet_capuchin.annotations) whose selections join training:
    # `capuchin` as positives, `other:*` as negatives, `unsure` left out. In folders listed
    # under complete_annotations every call is marked, so the unlabelled rest of each
    # recording is cut into background_clip_s negatives too. A families.csv in a folder
    # (yamcap families) groups its recordings for the split.
    annotations: list = field(default_factory=list)
    complete_annotations: list = field(default_factory=list)
    audio_dirs: list = field(default_factory=list)  # where annotated recordings are found (besides the data's forest folder)
    annotation_margin_s: float = 0.5  # unlabelled negatives keep this far from any selection
    # "frames": every backbone frame inside an annotated call is a positive of its own (the head
    # learns the whole call); "whole": the call is one positive bag, pooled like a clip
    call_bags: str = "frames"


@dataclass
class HeadConfig:
    hidden_units: int = 512
    dropout: float = 0.3
    # "max" won a source-grouped 5-fold CV on train+val (experiments/head_cv.py, docs/experiments.md);
    # "auto" = best on the (small) validation split
    pooling: str = "max"
    learning_rate: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10  # early stopping on validation loss, best weights restored
    balance_classes: bool = True  # weight classes inversely to their frequency
    context: int = 0  # frames on each side whose mean embedding joins each frame's input
    # "embeddings", or "embeddings+spectral_shape": each frame's log-mel band profile (gain
    # removed) joins its embedding; better clip F1 in CV, worse counting on the validation
    # soundscapes (docs/experiments.md, "Head settings")
    inputs: str = "embeddings"
    # > 0: bags of at most this many frames are batched apart from longer ones, each batch padded
    # to its own longest (same loss, faster with a few long bags; the review retrain uses 8)
    bucket_frames: int = 0


@dataclass
class AugmentConfig:
    enabled: bool = True  # harmless in CV on train+val; see docs/experiments.md for what was and was not shown
    copies: int = 2  # augmented copies per training clip
    snr_db_min: float = 0.0  # clip mixed into negative audio at an SNR drawn from this range
    snr_db_max: float = 20.0
    gain_db: float = 6.0  # +- random gain
    max_shift_s: float = 0.5  # circular time shift


@dataclass
class CNNConfig:
    selected_length: int = 0  # samples; 0 = mean capuchin-clip length of the training split
    frame_length: int = 320
    frame_step: int = 32
    epochs: int = 10
    batch_size: int = 16
    patience: int = 5
    learning_rate: float = 1e-3
    count_hop_s: float = 0.0  # window hop when counting; 0 = non-overlapping (the notebook)


@dataclass
class EventConfig:
    # Chosen on out-of-fold frame scores of the 40 annotated forest recordings (family-grouped CV,
    # `python benchmarks/forest_cv.py ... --tune-all`, docs/evaluation.md); the reported CV
    # figures choose them again inside each fold, never on the fold they score.
    threshold: float = 0.99  # on-threshold; negative = the model's stored (clip) threshold
    off_threshold: float = -1.0  # hysteresis off-threshold; negative = same as threshold
    min_gap_s: float = 1.0  # events closer than this are merged
    min_duration_s: float = 1.0  # shorter events are dropped
    max_duration_s: float = 8.0  # longer runs are split at score minima (calls last 3.5-6 s)
    notebook_rule: bool = False  # the notebook's rule: non-overlapping windows, p > 0.99, runs


@dataclass
class OutputConfig:
    # recorder clock time (docs/monitoring.md): the sites' zone, which clock times and activity
    # hours are written in; an IANA name ("America/Manaus"), "UTC" or an offset ("-04:00")
    timezone: str = "UTC"
    name_time: str = "utc"  # file-name times are "utc" (AudioMoth's default) or "local" (in timezone; Song Meters)
    site_from: str = "folder"  # "folder" (the parent folder's name), "metadata" (recorder serial) or "none"
    time_pattern: str = ""  # strptime pattern of the start time in file names; "" = AudioMoth / Song Meter names
    raven_low_hz: float = 400.0  # the band of a Raven selection: a Capuchinbird call's
    raven_high_hz: float = 4000.0


# Every default below with comments, installed with the package (configs/default.toml in the
# source tree links to it); tests/test_config.py keeps the two equal.
DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "default.toml"


@dataclass
class Config:
    seed: int = 0
    cache_dir: str = ""  # "" = $YAMCAP_CACHE or ~/.cache/yamcap
    audio: AudioConfig = field(default_factory=AudioConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    events: EventConfig = field(default_factory=EventConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        cfg = cls()
        cfg.update(data)
        return cfg

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> "Config":
        """Defaults, then the TOML file ``path`` (if given), then ``overrides``."""
        cfg = cls()
        if path is not None:
            path = Path(path)
            try:
                with open(path, "rb") as fh:
                    cfg.update(tomllib.load(fh), origin=str(path))
            except FileNotFoundError:
                raise ConfigError(f"{path}: config file not found") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        if overrides:
            cfg.set_many(overrides)
        return cfg

    def update(self, data: dict[str, Any], origin: str = "config") -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                section = getattr(self, key, None)
                if section is None or not dataclasses.is_dataclass(section):
                    raise ConfigError(f"{origin}: unknown section [{key}]")
                for sub, subvalue in value.items():
                    self.set(f"{key}.{sub}", subvalue, origin)
            else:
                self.set(key, value, origin)

    def set_many(self, overrides: dict[str, Any]) -> None:
        for key, value in overrides.items():
            if value is not None:
                self.set(key, value, "override")

    def set(self, dotted: str, value: Any, origin: str = "override") -> None:
        """Set one value by its dotted name (``head.dropout``), converting to the field's type."""
        parts = dotted.split(".")
        target: Any = self
        for part in parts[:-1]:
            target = getattr(target, part, None)
            if target is None or not dataclasses.is_dataclass(target):
                raise ConfigError(f"{origin}: unknown setting '{dotted}'")
        name = parts[-1]
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields or dataclasses.is_dataclass(getattr(target, name)):
            raise ConfigError(f"{origin}: unknown setting '{dotted}'")
        current = getattr(target, name)
        setattr(target, name, _coerce(value, type(current), dotted, origin))

    # -- output -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """Serialise to TOML (flat keys first, then one table per section)."""
        data = self.to_dict()
        lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
        for section, values in data.items():
            if isinstance(values, dict):
                lines.append(f"\n[{section}]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        from .fileio import atomic_write_text

        atomic_write_text(path, self.to_toml())


def _coerce(value: Any, kind: type, dotted: str, origin: str) -> Any:
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
        if kind is list:
            return list(value) if not isinstance(value, str) else json.loads(value)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{origin}: '{dotted}' expects {kind.__name__}, got {value!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string
