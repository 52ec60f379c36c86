"""The Kaggle "Z by HP Unlocked Challenge 3" layout, source-grouped splits and manifests.

Clips cut from one recording are near-duplicates, so splits are made by *source*
(``XC<id>-<k>`` -> ``XC<id>``; ``<name>-<k>`` -> ``<name>``), never by clip.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .errors import YamcapError
from .fileio import AUDIO_EXTENSIONS, atomic_write_csv

POSITIVE_DIR = "Parsed_Capuchinbird_Clips"
NEGATIVE_DIR = "Parsed_Not_Capuchinbird_Clips"
FOREST_DIRS = ("Forest Recordings", "Forest_Recordings")
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "source", "split", "start_s", "end_s")

_CLIP_INDEX = re.compile(r"^(?P<source>.+?)-\d+$")


@dataclass(frozen=True)
class Clip:
    path: Path
    label: int  # 1 = Capuchinbird call, 0 = anything else
    source: str  # recording the clip was cut from
    split: str = ""
    start_s: float = 0.0  # a segment of a longer file when end_s > 0 (call-free backgrounds)
    end_s: float = 0.0
    partial: bool = False  # from a partial annotation table (review labels): the rest of its file is unknown

    @property
    def is_segment(self) -> bool:
        return self.end_s > 0

    def with_split(self, split: str) -> "Clip":
        return replace(self, split=split)


def source_of(path: str | Path) -> str:
    """Source recording of a clip: the file stem without its trailing ``-<k>``."""
    stem = Path(path).stem
    match = _CLIP_INDEX.match(stem)
    return match.group("source") if match else stem


def find_forest_dir(data_dir: str | Path) -> Path | None:
    for name in FOREST_DIRS:
        candidate = Path(data_dir) / name
        if candidate.is_dir():
            return candidate
    return None


def discover_clips(data_dir: str | Path) -> list[Clip]:
    """All labelled clips of a Kaggle-layout folder, any audio extension, sorted by path."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise YamcapError(f"{data_dir}: data folder not found")
    clips: list[Clip] = []
    for folder, label in ((POSITIVE_DIR, 1), (NEGATIVE_DIR, 0)):
        sub = data_dir / folder
        if not sub.is_dir():
            raise YamcapError(f"{data_dir}: expected a sub-folder '{folder}' (Kaggle layout)")
        for path in sorted(sub.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS:
                clips.append(Clip(path, label, source_of(path)))
    if not any(c.label == 1 for c in clips) or not any(c.label == 0 for c in clips):
        raise YamcapError(f"{data_dir}: need clips of both classes, found {len(clips)} in all")
    return clips


def background_clips(data_dir: str | Path, stems: list[str], clip_s: float = 3.0,
                     echo=None) -> list[Clip]:
    """Negative segments of ``clip_s`` seconds cut from call-free forest recordings.

    ``stems`` name recordings in the forest folder (``recording_01``); missing ones are
    reported through ``echo`` and skipped. Each recording is its own source.
    """
    from .audio import audio_info

    forest = find_forest_dir(data_dir)
    clips: list[Clip] = []
    for stem in stems:
        matches = sorted(forest.glob(f"{stem}.*")) if forest else []
        matches = [m for m in matches if m.suffix.lower() in AUDIO_EXTENSIONS]
        if not matches:
            if echo:
                echo(f"background recording '{stem}' not found in {forest or data_dir}; skipped")
            continue
        info = audio_info(matches[0])
        n = int(info.duration_s // clip_s)
        clips.extend(Clip(matches[0], 0, f"background:{stem}", "", k * clip_s, (k + 1) * clip_s) for k in range(n))
    return clips


def split_by_source(
    clips: list[Clip],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> list[Clip]:
    """Assign each clip a split, grouped by source and stratified by label.

    For each stratum (label; background segments apart from clips) the sources are shuffled
    (seeded) and cut by the fractions of *sources* (train, val, test); val and test get at
    least one source of each stratum when there are three or more. Returns new clips, in the
    input order.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise YamcapError(f"invalid split fractions {fractions}")
    fr = fr / fr.sum()
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    strata = sorted({(c.label, c.is_segment) for c in clips})
    for stratum in strata:
        sources = sorted({c.source for c in clips if (c.label, c.is_segment) == stratum})
        rng.shuffle(sources)
        n = len(sources)
        n_test = int(round(fr[2] * n))
        n_val = int(round(fr[1] * n))
        if n >= 3:
            n_test = max(n_test, 1 if fr[2] > 0 else 0)
            n_val = max(n_val, 1 if fr[1] > 0 else 0)
        n_train = n - n_test - n_val
        for i, src in enumerate(sources):
            split = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
            if src in assignment and assignment[src] != split:
                # one source name used for both labels: keep it in one split
                continue
            assignment[src] = split
    return [c.with_split(assignment[c.source]) for c in clips]


def write_manifest(clips: list[Clip], path: str | Path) -> None:
    rows = [(str(c.path), c.label, c.source, c.split, c.start_s, c.end_s) for c in clips]
    atomic_write_csv(path, MANIFEST_COLUMNS, rows)


def read_manifest(path: str | Path) -> list[Clip]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or set(MANIFEST_COLUMNS[:4]) - set(reader.fieldnames):
            raise YamcapError(f"{path}: not a manifest (need columns {', '.join(MANIFEST_COLUMNS)})")
        return [Clip(Path(r["path"]), int(r["label"]), r["source"], r["split"],
                     float(r.get("start_s") or 0), float(r.get("end_s") or 0)) for r in reader]


def split_summary(clips: list[Clip]) -> dict[str, dict[str, int]]:
    """Clips and sources per split and label, for reports."""
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        part = [c for c in clips if c.split == split]
        out[split] = {
            "clips_pos": sum(c.label == 1 for c in part),
            "clips_neg": sum(c.label == 0 for c in part),
            "sources_pos": len({c.source for c in part if c.label == 1}),
            "sources_neg": len({c.source for c in part if c.label == 0}),
            "background_segments": sum(c.is_segment for c in part),
        }
    return out


# -- segments of annotated long recordings ------------------------------------------------

MIN_SEGMENT_S = 1.0  # a selection shorter than this is widened (centred) to one YAMNet window and a bit


def frame_pieces(begin_s: float, end_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """The backbone frames ``[k * hop_s, k * hop_s + window_s]`` lying wholly inside
    ``[begin_s, end_s]``; the one nearest its centre if none does."""
    k0 = int(np.ceil(begin_s / hop_s - 1e-9))
    pieces = []
    k = k0
    while k * hop_s + window_s <= end_s + 1e-9:
        pieces.append((round(k * hop_s, 3), round(k * hop_s + window_s, 3)))
        k += 1
    if not pieces:
        k = max(0, int(round(((begin_s + end_s) / 2 - window_s / 2) / hop_s)))
        pieces.append((round(k * hop_s, 3), round(k * hop_s + window_s, 3)))
    return pieces


def selection_clips(path: Path, selections, source: str, complete: bool, clip_s: float = 3.0,
                    margin_s: float = 0.5, duration_s: float | None = None,
                    call_frames: tuple[float, float] | None = None) -> list[Clip]:
    """Training segments of one annotated recording (not yet split).

    ``capuchin`` selections -> positives, ``other:*`` -> negatives, ``unsure`` -> nothing.
    With ``call_frames = (window_s, hop_s)``, a call becomes one positive per backbone frame
    lying inside it (:func:`frame_pieces`): every frame of an annotated call is a call, so the
    head learns to score all of it, not only its most telling frame. With ``complete`` (every
    call in the recording is marked), the audio that lies at least ``margin_s`` away from every
    selection is cut into ``clip_s`` negatives as well (pieces shorter than ``MIN_SEGMENT_S``
    are dropped). All segments get ``source``, so one recording (or family) never lands in two
    splits."""
    from .annotations import is_call, is_other

    clips: list[Clip] = []
    for s in selections:
        label = 1 if is_call(s.label) else 0 if is_other(s.label) else None
        if label is None:
            continue
        if label == 1 and call_frames:
            clips.extend(Clip(path, 1, source, "", a, b) for a, b in frame_pieces(s.begin_s, s.end_s, *call_frames))
            continue
        start, end = s.begin_s, s.end_s
        if end - start < MIN_SEGMENT_S:
            mid = (start + end) / 2
            start, end = max(0.0, mid - MIN_SEGMENT_S / 2), max(0.0, mid - MIN_SEGMENT_S / 2) + MIN_SEGMENT_S
        clips.append(Clip(path, label, source, "", round(start, 3), round(end, 3)))
    if complete and duration_s:
        busy = sorted((max(0.0, s.begin_s - margin_s), s.end_s + margin_s) for s in selections)
        t = 0.0
        for b0, b1 in busy + [(duration_s, duration_s)]:
            gap_end = min(b0, duration_s)
            while gap_end - t >= MIN_SEGMENT_S:
                piece_end = min(t + clip_s, gap_end)
                if gap_end - piece_end < MIN_SEGMENT_S:  # do not leave a sliver: take it along
                    piece_end = gap_end if gap_end - t <= 1.5 * clip_s else piece_end
                clips.append(Clip(path, 0, source, "", round(t, 3), round(piece_end, 3)))
                t = piece_end
            t = max(t, b1)
    return sorted(clips, key=lambda c: (c.start_s, c.end_s))


def find_recordings(stems, folders) -> dict[str, Path]:
    """Stem -> audio file, searching ``folders`` recursively (first folder first)."""
    from .fileio import expand_audio_paths

    wanted, found = set(stems), {}
    for folder in folders:
        if folder and Path(folder).is_dir():
            for p in expand_audio_paths([folder]):
                if p.stem in wanted and p.stem not in found:
                    found[p.stem] = p
    return found


def annotated_clips(folders, complete_folders, audio_folders, clip_s: float = 3.0, margin_s: float = 0.5,
                    echo=None, call_frames: tuple[float, float] | None = None) -> list[Clip]:
    """Segments from folders of annotation tables (``yamnet_capuchin.annotations``), not yet split.

    Each recording's source is ``rec:<family>``, the family taken from a ``families.csv``
    in its folder (``yamcap families``), else the recording itself. A table whose recording
    is not found in ``audio_folders`` is reported through ``echo`` and skipped."""
    from .annotations import read_folder
    from .audio import audio_info
    from .families import read_families

    clips: list[Clip] = []
    seen: set[str] = set()
    for folder, complete in [(f, False) for f in folders] + [(f, True) for f in complete_folders]:
        tables = read_folder(folder)
        fam_file = Path(folder) / "families.csv"
        families = read_families(fam_file) if fam_file.exists() else {}
        audio = find_recordings(tables, audio_folders)
        for stem, selections in tables.items():
            if stem in seen:
                raise YamcapError(f"recording '{stem}' is annotated in two folders")
            seen.add(stem)
            if stem not in audio:
                if echo:
                    echo(f"annotations: no audio for '{stem}' in {', '.join(map(str, audio_folders)) or '(no folder)'}; skipped")
                continue
            duration = audio_info(audio[stem]).duration_s if complete else None
            source = f"rec:{families.get(stem, stem)}"
            segments = selection_clips(audio[stem], selections, source, complete, clip_s, margin_s, duration,
                                       call_frames)
            clips.extend(segments if complete else [replace(c, split="train", partial=True) for c in segments])
    return clips


def candidate_clips(data_dir: str | Path, config: Config, echo: Callable[[str], None] = print,
                    framing: tuple[float, float] = (0.975, 0.48)) -> list[Clip]:
    """Clips of ``data_dir``, call-free background segments and annotated segments, not yet
    split; ``framing`` = the backbone's (window_s, hop_s), for ``data.call_bags = "frames"``."""
    d = config.data
    if d.call_bags not in ("frames", "whole"):
        raise YamcapError(f"data.call_bags must be 'frames' or 'whole', got '{d.call_bags}'")
    clips = discover_clips(data_dir)
    annotated = []
    if d.annotations or d.complete_annotations:
        audio_dirs = [find_forest_dir(data_dir), *d.audio_dirs]
        annotated = annotated_clips(d.annotations, d.complete_annotations, audio_dirs, d.background_clip_s,
                                    d.annotation_margin_s, echo, framing if d.call_bags == "frames" else None)
    covered = {c.path.stem for c in annotated}  # an annotated recording is no longer a plain background
    backgrounds = [b for b in d.backgrounds if b not in covered]
    return clips + background_clips(data_dir, backgrounds, d.background_clip_s, echo) + annotated


def assign_splits(readable: list[Clip], config: Config) -> list[Clip]:
    """Split the clips that could be read by source (same order). Unreadable files are left out
    *before* the split is drawn, so a bad file cannot move other sources to another split and
    the YAMNet head and the CNN, which read audio differently, still share one split.

    Clips that come with a split keep it: the segments of partial annotation tables (review
    labels) are all training data, so that labelling another recording moves no other clip to
    another split (and a retrain after new labels finds its augmented copies in the cache)."""
    s = config.split
    drawn = iter(split_by_source([c for c in readable if not c.split],
                                 (s.train_fraction, s.val_fraction, s.test_fraction), config.seed))
    return [c if c.split else next(drawn) for c in readable]
