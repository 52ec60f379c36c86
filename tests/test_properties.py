"""Property-based tests (hypothesis) of the pure parts, and a decoder fuzz test.

Example counts are kept small (the suite stays fast); ``HYPOTHESIS_PROFILE=thorough`` runs
ten times as many.
"""

from __future__ import annotations

import io
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e '.[test]')")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from synth import call, soundscape, write  # noqa: E402
from yamnet_capuchin.audio import SAMPLE_RATE, iter_blocks, load_audio  # noqa: E402
from yamnet_capuchin.errors import AudioError  # noqa: E402
from yamnet_capuchin.metrics import event_scores, iou, match_events  # noqa: E402
from yamnet_capuchin.events import EventParams, detect_events  # noqa: E402

settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1

WINDOW_S, HOP_S = 0.975, 0.48  # YAMNet's framing

scores_st = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=120).map(
    lambda xs: np.asarray(xs, np.float64))
params_st = st.builds(
    EventParams,
    threshold=st.floats(0.05, 0.95),
    off_threshold=st.one_of(st.none(), st.floats(0.0, 0.95)),
    min_gap_s=st.floats(0.0, 3.0),
    min_duration_s=st.floats(0.0, 3.0),
    max_duration_s=st.one_of(st.just(0.0), st.floats(0.5, 8.0)),
)


def frames_of(scores):
    return np.arange(scores.size) * HOP_S


# -- events.detect_events --------------------------------------------------------------------------

@given(scores_st, params_st)
def test_events_lie_in_the_file_sorted_apart_and_within_durations(scores, params):
    events = detect_events(frames_of(scores), scores, WINDOW_S, HOP_S, params)
    end_of_frames = (scores.size - 1) * HOP_S + WINDOW_S
    for e in events:
        assert 0.0 <= e.start_s < e.end_s <= end_of_frames + 1e-9
        assert e.duration_s >= params.min_duration_s - 1e-9
        if params.max_duration_s > 0:
            max_frames = max(1, int(np.floor(params.max_duration_s / HOP_S + 1e-9)))
            # a run of two frames cannot be split at an interior frame
            assert e.duration_s <= max(max_frames, 2) * HOP_S + 1e-9
        assert 0.0 <= e.mean_score <= e.peak_score <= 1.0
        if not params.max_duration_s:  # unsplit, each event holds a frame at or above the on-threshold
            assert e.peak_score >= params.threshold
    for a, b in zip(events, events[1:]):
        assert a.end_s <= b.start_s + 1e-9  # sorted, non-overlapping


def covered_frames(scores, params) -> int:
    events = detect_events(frames_of(scores), scores, WINDOW_S, HOP_S, params)
    return int(round(sum(e.duration_s for e in events) / HOP_S))


@given(scores_st, params_st, st.floats(0.0, 0.5))
def test_a_higher_on_threshold_never_covers_more_frames(scores, params, raise_by):
    """Runs at a higher on-threshold are a subset of those at a lower one, so are their
    merges. (Splitting at max_duration_s cuts a long merge at its weakest frame, which a
    shorter merge may keep, so it is off here.)"""
    off = params.off_threshold if params.off_threshold is not None else params.threshold
    low = EventParams(params.threshold, off, params.min_gap_s, params.min_duration_s, 0.0)
    high = EventParams(min(1.0, params.threshold + raise_by), off, params.min_gap_s, params.min_duration_s, 0.0)
    assert covered_frames(scores, high) <= covered_frames(scores, low)


# -- metrics.match_events / event_scores -------------------------------------------------------

interval_st = st.tuples(st.floats(0.0, 60.0), st.floats(0.05, 5.0)).map(lambda t: (t[0], t[0] + t[1]))
intervals_st = st.lists(interval_st, max_size=8)


@given(intervals_st, intervals_st, st.floats(0.05, 0.9))
def test_matching_is_symmetric_and_one_to_one(truth, pred, min_iou):
    forward = match_events(truth, pred, min_iou)
    backward = match_events(pred, truth, min_iou)
    total = sum(iou(truth[t], pred[p]) for t, p in forward)
    assert total == pytest.approx(sum(iou(pred[p], truth[t]) for p, t in backward), abs=1e-9)
    assert len({t for t, _ in forward}) == len(forward) == len({p for _, p in forward})
    assert all(iou(truth[t], pred[p]) >= min_iou for t, p in forward)
    a = event_scores({"f": truth}, {"f": pred}, min_iou)
    b = event_scores({"f": pred}, {"f": truth}, min_iou)
    if len(forward) == len(backward):  # equal-weight optimal matchings can differ in size only on exact ties
        assert (a["event_precision"], a["event_recall"]) == pytest.approx((b["event_recall"], b["event_precision"]))
        assert a["event_f1"] == pytest.approx(b["event_f1"])


@given(st.dictionaries(st.sampled_from(["a.wav", "b.wav", "c.wav"]), intervals_st.filter(bool), min_size=1),
       st.floats(0.05, 1.0))
def test_perfect_prediction_scores_f1_one(truth, min_iou):
    s = event_scores(truth, truth, min_iou)
    assert s["event_f1"] == 1.0 and s["event_fp"] == 0 and s["event_fn"] == 0
    assert event_scores(truth, truth, collar_s=0.0)["event_f1"] == 1.0


# -- audio: resampling lengths and blocks ------------------------------------------------------------

@settings(max_examples=25 * SCALE)
@given(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]) | st.integers(4000, 100000),
       st.integers(1, 300000), st.sampled_from(["wav", "flac"]))
def test_resampled_length_is_the_rounded_duration(tmp_path_factory, rate, n, fmt):
    path = tmp_path_factory.mktemp("rs") / f"x.{fmt}"
    assume(fmt == "wav" or rate <= 655350)
    wave = (0.1 * np.sin(np.arange(n) * 0.01)).astype(np.float32)
    sf.write(str(path), wave, rate)
    if n * SAMPLE_RATE / rate < 0.5:  # less than half a sample at 16 kHz: nothing to resample
        with pytest.raises(AudioError, match="too short"):
            load_audio(path)
        return
    y = load_audio(path)
    assert abs(y.size - n * SAMPLE_RATE / rate) <= 0.5 + 1e-9
    assert y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0


@settings(max_examples=25 * SCALE)
@given(st.integers(1, 200000), st.integers(2, 70000), st.data())
def test_blocks_rebuild_the_whole_waveform(tmp_path_factory, n, block, data):
    overlap = data.draw(st.integers(0, block - 1))
    path = tmp_path_factory.mktemp("bl") / "x.wav"
    sf.write(str(path), (0.1 * np.sin(np.arange(n) * 0.003)).astype(np.float32), 22050)
    whole = load_audio(path)
    blocks = list(iter_blocks(path, block, overlap))
    stride = block - overlap
    assert [b.start for b in blocks] == [k * stride for k in range(len(blocks))]
    assert blocks[-1].is_last and not any(b.is_last for b in blocks[:-1])
    rebuilt = np.concatenate([b.samples[: stride] for b in blocks[:-1]] + [blocks[-1].samples])
    assert np.array_equal(rebuilt, whole)


# -- streaming: blocks give the whole-file frames -----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_backbone(tiny_yamnet):
    from yamnet_capuchin.backbones import YamnetBackbone

    return YamnetBackbone(str(tiny_yamnet)).load()


@settings(max_examples=12 * SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.floats(0.05, 40.0), st.floats(0.3, 25.0), st.integers(0, 2), st.integers(0, 2**16))
def test_streamed_frames_equal_whole_file_frames(tiny_backbone, tmp_path_factory, seconds, block_seconds, context,
                                                 seed):
    from yamnet_capuchin.config import Config
    from yamnet_capuchin.head import FrameHead
    from yamnet_capuchin.model import YamnetDetector
    from yamnet_capuchin.streaming import stream_frame_scores

    rng = np.random.default_rng(seed)
    head = FrameHead(hidden_units=8, pooling="mean", context=context)
    width = 1024 * (2 if context else 1)
    head.weights_ = {"w1": rng.standard_normal((width, 8)).astype(np.float32) * 0.05, "b1": np.zeros(8, np.float32),
                     "w2": rng.standard_normal(8).astype(np.float32), "b2": np.zeros(1, np.float32)}
    det = YamnetDetector(head, 0.5, Config(), {}, tiny_backbone)
    path = write(tmp_path_factory.mktemp("st") / "s.wav", soundscape(seconds, [0.5] if seconds > 3 else [], rng=rng))
    whole_t, whole_s = det.frame_scores(load_audio(path))
    fs = stream_frame_scores(det, path, block_seconds=block_seconds)
    assert np.array_equal(fs.start_s, whole_t)
    assert np.allclose(fs.scores, whole_s, rtol=0, atol=1e-5)


# -- the decoders, fuzzed ------------------------------------------------------------------------------

# about 30 s in all on 2 cores: random bytes rarely get past a header, so most go to mutations
RANDOM_EXAMPLES, MUTATED_EXAMPLES = 3000 * SCALE, 6000 * SCALE


def _valid_bytes() -> dict[str, bytes]:
    out = {}
    wave = call(1.0, sr=22050)
    for ext, fmt, sub in (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("mp3", "MP3", None)):
        buf = io.BytesIO()
        sf.write(buf, wave, 22050, format=fmt, subtype=sub)
        out[ext] = buf.getvalue()
    return out


VALID = _valid_bytes()


@contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) when one decode takes longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"decoding took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _decode_is_clean(path: Path) -> None:
    """Valid audio, or AudioError with one line naming the file: nothing else."""
    try:
        with time_limit(20):
            y = load_audio(path)
    except AudioError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        hypothesis.event("AudioError: " + re.sub(r"[0-9.]+", "N", exc.reason.split(" (")[0])[:40])
        return
    hypothesis.event("decoded")
    assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0


@settings(max_examples=RANDOM_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(VALID)), st.binary(min_size=0, max_size=4096))
def test_random_bytes_never_escape_as_another_error(tmp_path_factory, ext, blob):
    path = tmp_path_factory.mktemp("fz") / f"random.{ext}"
    path.write_bytes(blob)
    _decode_is_clean(path)


@settings(max_examples=MUTATED_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_files_never_escape_as_another_error(tmp_path_factory, ext, data):
    blob = bytearray(VALID[ext])
    for _ in range(data.draw(st.integers(1, 12), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]), label="kind")
        pos = data.draw(st.integers(0, max(0, len(blob) - 1)), label="pos")
        if kind == "flip" and blob:
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and blob:
            blob[pos] = data.draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            del blob[pos: pos + data.draw(st.integers(1, 256))]
        elif kind == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
        else:
            del blob[pos:]
    path = tmp_path_factory.mktemp("fz") / f"mutated.{ext}"
    path.write_bytes(bytes(blob))
    _decode_is_clean(path)
