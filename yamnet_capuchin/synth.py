"""Soundscape synthesis: known calls mixed into real call-free backgrounds (``yamcap synth``).

Ground truth for counting the way sound-event-detection research builds it: each call clip
is one call, placed at a known time at an SNR measured against the background under it;
other-sound clips are added as distractors; nothing overlaps. Dense sequences (gaps of
0.3-2 s) are included because the notebook's counting rule fails there.

Output per soundscape: FLAC at the background's sample rate and channel count, a Raven
selection table; one ``truth.csv`` (``file,start_s,end_s,source_clip,snr_db``; a file without
calls gets one row with empty times). The same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .augment import rms
from .config import Config, SynthParams
from .errors import AudioError, YamcapError
from .events import Event
from .fileio import atomic_path, atomic_write_csv
from .outputs import write_raven_table
from .progress import track

DENSITIES = ("sparse", "dense", "mixed")
TRUTH_COLUMNS = ("file", "start_s", "end_s", "source_clip", "snr_db")


@dataclass(frozen=True)
class TruthEvent:
    file: str
    start_s: float
    end_s: float
    source_clip: str
    snr_db: float


@dataclass(frozen=True)
class CallSegment:
    """A call cut from a longer (annotated) recording: ``path`` from ``start_s`` to ``end_s``."""

    path: Path
    start_s: float
    end_s: float

    @property
    def name(self) -> str:
        return f"{Path(self.path).name}@{self.start_s:.2f}-{self.end_s:.2f}"

    def __lt__(self, other) -> bool:  # sorted() with plain paths: by name
        return self.name < getattr(other, "name", str(other))


def _read(source):
    """(frames, channels) float32 and the rate of a file, or of a :class:`CallSegment`."""
    import soundfile as sf

    try:
        if isinstance(source, CallSegment):
            with sf.SoundFile(str(source.path)) as fh:
                rate = fh.samplerate
                fh.seek(int(source.start_s * rate))
                data = fh.read(int((source.end_s - source.start_s) * rate), dtype="float32", always_2d=True)
            return data, rate
        data, rate = sf.read(str(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise YamcapError(f"{getattr(source, 'name', source)}: cannot read ({exc})") from None
    return data, rate


def _to_rate(mono: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    import soxr

    return mono if rate_in == rate_out else soxr.resample(mono, rate_in, rate_out).astype(np.float32)


class _Timeline:
    """Occupied intervals, to keep events apart."""

    def __init__(self):
        self.spans: list[tuple[float, float]] = []

    def free(self, a: float, b: float, margin: float) -> bool:
        return all(b + margin <= s or a >= e + margin for s, e in self.spans)

    def add(self, a: float, b: float) -> None:
        self.spans.append((a, b))


def _call_times(rng, lengths: list[float], duration: float, density: str, p: SynthParams,
                timeline: _Timeline) -> list[float | None]:
    """Start times for calls of the given lengths (None where one does not fit)."""
    mode = density if density != "mixed" else ("dense" if rng.random() < 0.5 else "sparse")
    starts: list[float | None] = []
    if mode == "dense":
        # one or two bouts of calls separated by short gaps
        t = float(rng.uniform(0.5, max(0.6, duration * 0.4)))
        for length in lengths:
            if t + length > duration - 0.1:
                t = float(rng.uniform(0.5, max(0.6, duration - length - 0.1)))
            if timeline.free(t, t + length, 0.25):
                starts.append(t)
                timeline.add(t, t + length)
            else:
                starts.append(None)
            t = (starts[-1] if starts[-1] is not None else t) + length + float(rng.uniform(*p.dense_gap_s))
        return starts
    for length in lengths:
        for _ in range(50):
            t = float(rng.uniform(0.2, max(0.3, duration - length - 0.2)))
            if timeline.free(t, t + length, p.sparse_gap_min_s):
                starts.append(t)
                timeline.add(t, t + length)
                break
        else:
            starts.append(None)
    return starts


def synthesize(calls: Sequence[Path], negatives: Sequence[Path], backgrounds: Sequence[Path], out_dir: str | Path,
               params: SynthParams = SynthParams(), progress: bool = True,
               echo: Callable[[str], None] = print) -> list[TruthEvent]:
    """Write ``params.n_files`` soundscapes into ``out_dir``; returns the truth events."""
    if not calls or not backgrounds:
        raise YamcapError("synth needs at least one call clip and one background recording")
    if params.density not in DENSITIES:
        raise YamcapError(f"density must be one of {', '.join(DENSITIES)}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(params.seed)
    calls, negatives, backgrounds = sorted(calls, key=_name), sorted(negatives), sorted(backgrounds)
    truth: list[TruthEvent] = []
    for i in track(range(params.n_files), "Synthesizing", params.n_files, progress):
        name = f"soundscape_{i:03d}.flac"
        bg_path = backgrounds[int(rng.integers(len(backgrounds)))]
        bg, rate = _read(bg_path)
        n = int(params.duration_s * rate)
        if bg.shape[0] < n:
            bg = np.tile(bg, (int(np.ceil(n / bg.shape[0])), 1))
        offset = int(rng.integers(0, bg.shape[0] - n + 1))
        mix = bg[offset: offset + n].copy()
        bg_mono = mix.mean(axis=1)
        timeline = _Timeline()
        n_calls = int(rng.integers(params.calls_min, params.calls_max + 1))
        chosen = [calls[int(k)] for k in rng.integers(0, len(calls), size=n_calls)]
        waves = []
        for c in chosen:
            data, r = _read(c)
            waves.append(_to_rate(data.mean(axis=1), r, rate))
        starts = _call_times(rng, [w.size / rate for w in waves], params.duration_s, params.density, params,
                             timeline)
        events: list[TruthEvent] = []
        for clip, wave, t in zip(chosen, waves, starts):
            snr = float(rng.uniform(params.snr_db_min, params.snr_db_max))
            if t is None:
                continue
            _add(mix, bg_mono, wave, int(t * rate), snr)
            events.append(TruthEvent(name, round(t, 4), round(t + wave.size / rate, 4), clip.name, round(snr, 2)))
        for _ in range(int(rng.integers(0, params.distractors_max + 1)) if negatives else 0):
            neg = negatives[int(rng.integers(len(negatives)))]
            data, r = _read(neg)
            wave = _to_rate(data.mean(axis=1), r, rate)
            t = float(rng.uniform(0, max(0.1, params.duration_s - wave.size / rate)))
            snr = float(rng.uniform(params.snr_db_min, params.snr_db_max))
            if timeline.free(t, t + wave.size / rate, 0.5):
                timeline.add(t, t + wave.size / rate)
                _add(mix, bg_mono, wave, int(t * rate), snr)
        events.sort(key=lambda e: e.start_s)
        _write_flac(out_dir / name, np.clip(mix, -1.0, 1.0), rate)
        write_raven_table(out_dir / f"{Path(name).stem}.Table.1.selections.txt",
                          [Event(e.start_s, e.end_s, 1.0, 1.0) for e in events])
        truth.extend(events if events else [TruthEvent(name, float("nan"), float("nan"), "", float("nan"))])
    write_truth(out_dir / "truth.csv", truth)
    return truth


def _name(source) -> str:
    return source.name if isinstance(source, CallSegment) else str(source)


def _add(mix: np.ndarray, bg_mono: np.ndarray, wave: np.ndarray, at: int, snr_db: float) -> None:
    """Add ``wave`` to every channel at sample ``at``, scaled to ``snr_db`` over the background under it."""
    end = min(at + wave.size, mix.shape[0])
    wave = wave[: end - at]
    local = rms(bg_mono[at:end])
    level = rms(wave)
    if level == 0:
        return
    gain = (local * 10 ** (snr_db / 20.0) / level) if local > 0 else 0.1 / level
    mix[at:end] += (gain * wave)[:, None]


def _write_flac(path: Path, data: np.ndarray, rate: int) -> None:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, data, rate, format="FLAC", subtype="PCM_16")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def write_truth(path: Path, events: Sequence[TruthEvent]) -> None:
    def fmt(x):
        return "" if x != x else f"{x:.4f}" if isinstance(x, float) else x

    atomic_write_csv(path, TRUTH_COLUMNS, [(e.file, fmt(e.start_s), fmt(e.end_s), e.source_clip, fmt(e.snr_db))
                                           for e in events])


def read_truth(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """truth.csv -> {file name: [(start_s, end_s), ...]} (files without calls map to [])."""
    return {f: [(a, b) for a, b, _ in ev] for f, ev in read_truth_rows(path).items()}


def read_truth_rows(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """truth.csv -> {file name: [(start_s, end_s, source clip), ...]} (files without calls map to [])."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"file", "start_s", "end_s"} <= set(reader.fieldnames):
            raise YamcapError(f"{path}: not a truth table (need file,start_s,end_s)")
        for row in reader:
            spans = out.setdefault(Path(row["file"]).name, [])
            if row["start_s"] not in ("", None):
                spans.append((float(row["start_s"]), float(row["end_s"]), row.get("source_clip") or ""))
    return out


def select_sources(calls_dir, negatives_dir, backgrounds_dir, data_dir=None, manifest=None,
                   splits: Sequence[str] = ("test",), background_list=None, model=None,
                   echo: Callable[[str], None] = print, progress: bool = True, annotations=None):
    """(calls, negatives, backgrounds) for :func:`synthesize`, honouring the split hygiene.

    With a manifest, clips come from ``splits`` only; a background recording listed in the
    manifest is used only if its split is among ``splits``, and one absent from it only for
    test soundscapes. With ``annotations`` (a folder of complete annotation tables of the
    background recordings), backgrounds are the recordings annotated call-free (no ``capuchin``
    and no ``unsure`` selection), and every annotated call of a recording allowed by the same
    split rule joins the call clips, cut whole from its recording. Otherwise backgrounds are
    kept only if ``background_list`` names them or, failing that, if the model finds no call
    in them.
    """
    from .dataset import NEGATIVE_DIR, POSITIVE_DIR, find_forest_dir, read_manifest
    from .fileio import expand_audio_paths

    if data_dir is not None:
        calls_dir = calls_dir or Path(data_dir) / POSITIVE_DIR
        negatives_dir = negatives_dir or Path(data_dir) / NEGATIVE_DIR
        backgrounds_dir = backgrounds_dir or find_forest_dir(data_dir)
    if calls_dir is None or backgrounds_dir is None:
        raise YamcapError("give --calls and --backgrounds (or --data with the Kaggle layout)")
    calls = expand_audio_paths([calls_dir])
    negatives = expand_audio_paths([negatives_dir]) if negatives_dir else []
    backgrounds = expand_audio_paths([backgrounds_dir])
    splits = [s.strip() for s in splits]
    if manifest is not None:
        rows = read_manifest(manifest)
        allowed = {Path(c.path).name for c in rows if c.split in splits and not c.is_segment}
        calls = [p for p in calls if p.name in allowed]
        negatives = [p for p in negatives if p.name in allowed]
        bg_split = {Path(c.path).stem: c.split for c in rows if c.is_segment}
        backgrounds = [p for p in backgrounds
                       if (bg_split[p.stem] in splits if p.stem in bg_split else "test" in splits)]
        echo(f"from splits {','.join(splits)}: {len(calls)} call clips, {len(negatives)} other clips, "
             f"{len(backgrounds)} candidate backgrounds")
    if annotations is not None:
        from .annotations import CALL, UNSURE, read_folder

        tables = read_folder(annotations)
        calls = calls + [CallSegment(p, s.begin_s, s.end_s) for p in backgrounds if p.stem in tables
                         for s in tables[p.stem] if s.label == CALL]
        backgrounds = [p for p in backgrounds
                       if p.stem in tables and not any(s.label in (CALL, UNSURE) for s in tables[p.stem])]
        echo(f"annotations: {sum(isinstance(c, CallSegment) for c in calls)} calls cut from recordings, "
             f"{len(backgrounds)} recordings annotated call-free")
    elif background_list is not None:
        wanted = {Path(line.strip()).stem for line in Path(background_list).read_text().splitlines() if line.strip()}
        backgrounds = [p for p in backgrounds if p.stem in wanted]
    else:
        backgrounds = call_free(backgrounds, model, echo, progress)
    if not calls or not backgrounds:
        raise YamcapError(f"nothing to mix: {len(calls)} call clips, {len(backgrounds)} call-free backgrounds")
    return calls, negatives, backgrounds


def call_free(paths: Sequence[Path], model=None, echo: Callable[[str], None] = print,
              progress: bool = True) -> list[Path]:
    """The recordings in which the model counts no call."""
    from .count import score_and_detect
    from .detectors import load_model

    detector = load_model(model)
    keep = []
    for p in track(paths, "Checking backgrounds are call-free", len(paths), progress):
        try:
            if not score_and_detect(detector, p, Config()).events:
                keep.append(p)
        except AudioError as exc:
            echo(f"skipped background {exc}")
    echo(f"call-free backgrounds ({len(keep)} of {len(paths)}): {', '.join(p.stem for p in keep)}")
    return keep
