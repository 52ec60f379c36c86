"""Can a head trained on a full-int8 YAMNet's own embeddings count as well as the float head?

    python experiments/int8_head.py --yamnet ../shared/models/yamnet --data ../shared/data/capuchin \
        --annotations data/annotations/forest --work /tmp/int8

docs/export.md found that quantizing the exported graph (YAMNet + the shipped head) to full
int8 runs at 1071x on one thread, but moves the shipped head's scores by up to 0.996: that head
was trained on float embeddings and saturates. This script tests the way out named there:

1. convert YAMNet (a 16-frame waveform block -> (16, 1024) embeddings) to a TFLite with int8
   convolutions and a float32 front end, calibrated on the blocks ``yamcap export --int8
   --calibrate <the two clip folders>`` uses (no labels are read for calibration);
2. wrap it as a backbone, so that the embedding cache, heads and family cross-validation of
   :mod:`yamnet_capuchin.crossval` run on its embeddings unchanged;
3. run the nested family CV of ``benchmarks/forest_cv.py`` with heads trained on the int8
   embeddings, and with heads trained on the float embeddings but run on the int8 ones (what
   ``yamcap export --int8`` does to a float-trained head); the shipped head on the int8
   embeddings is printed too, but it saw every one of these recordings (in-sample, not a result);
4. time decode + resample alone, and decode + int8 embedding + head, over the annotated
   recordings, with the decoding in a background thread as ``yamcap count`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from yamnet_capuchin.audio import load_audio
from yamnet_capuchin.backbones import YAMNET_HOP, YAMNET_WINDOW, Frames, frame_times, import_tensorflow, yamnet_frame_count
from yamnet_capuchin.config import FAMILY_FOLDS, Config
from yamnet_capuchin.crossval import SiteData, annotated_recordings, assign_folds, fixed_scorer, nested_cv
from yamnet_capuchin.detectors import load_model
from yamnet_capuchin.export import block_embedder, block_samples, calibration_blocks, quantize_int8

BLOCK_FRAMES = 16


def convert_int8(yamnet_dir: Path, calibration: list[np.ndarray], out: Path) -> Path:
    """YAMNet's block graph (waveform -> embeddings) with int8 convolutions, float in and out."""
    tf = import_tensorflow()
    model = tf.saved_model.load(str(yamnet_dir))
    fn = block_embedder(model, block_samples(BLOCK_FRAMES))  # the export's graph, FFT as matrix products
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    out.write_bytes(quantize_int8(converter, calibration))  # the same quantization as `yamcap export --int8`
    return out


class Int8Yamnet:
    """YAMNet with int8 convolutions as a TFLite of 16-frame blocks, behind the backbone surface."""

    name = "yamnet"
    version = "1"
    runtime = "tflite-int8-block"
    window_samples = YAMNET_WINDOW
    hop_samples = YAMNET_HOP
    embedding_dim = 1024

    def __init__(self, path: Path, threads: int = 2):
        self.handle = str(path)
        self.threads = threads
        self._interp = None
        self._fingerprint = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "runtime": self.runtime, "handle": self.handle,
                "fingerprint": self._fingerprint, "block_frames": BLOCK_FRAMES}

    def fingerprint(self) -> str:
        return self._fingerprint

    def frame_count(self, n_samples: int) -> int:
        return yamnet_frame_count(n_samples)

    def load(self) -> "Int8Yamnet":
        if self._interp is None:
            tf = import_tensorflow()
            self._interp = tf.lite.Interpreter(model_path=self.handle, num_threads=self.threads)
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]["index"]
            self._out = self._interp.get_output_details()[0]["index"]
        return self

    def embed(self, waveform: np.ndarray) -> Frames:
        self.load()
        wave = np.asarray(waveform, np.float32).reshape(-1)
        n = self.frame_count(wave.size)
        blocks = -(-n // BLOCK_FRAMES)
        padded = np.zeros(block_samples(blocks * BLOCK_FRAMES), np.float32)
        padded[: wave.size] = wave
        emb = np.empty((blocks * BLOCK_FRAMES, 1024), np.float32)
        for b in range(blocks):
            start = b * BLOCK_FRAMES * YAMNET_HOP
            self._interp.set_tensor(self._in, padded[start:start + block_samples(BLOCK_FRAMES)])
            self._interp.invoke()
            emb[b * BLOCK_FRAMES:(b + 1) * BLOCK_FRAMES] = self._interp.get_tensor(self._out)
        return Frames(frame_times(n, YAMNET_HOP), emb[:n], np.zeros((n, 0), np.float32))


def timing(paths: list[Path], backbone, head, threads: int) -> dict:
    """Seconds for decode + resample alone (one thread) and for the whole pipeline (decode in a
    background thread, int8 embedding with ``threads`` threads, then the head)."""
    from yamnet_capuchin.audio import audio_info
    from yamnet_capuchin.streaming import prefetch_blocks

    audio_s = sum(audio_info(p).duration_s for p in paths)
    t0 = time.perf_counter()
    for p in paths:
        load_audio(p)
    decode = time.perf_counter() - t0
    backbone.threads, backbone._interp = threads, None
    backbone.load()
    t0 = time.perf_counter()
    for path, blocks in prefetch_blocks(paths, 10 ** 9, 0):
        wave = np.concatenate([b.samples for b in blocks])
        head.frame_scores(head.frame_inputs(backbone.embed(wave)))
    total = time.perf_counter() - t0
    return {"audio_s": audio_s, "decode_s": decode, "pipeline_s": total, "decode_x": audio_s / decode,
            "pipeline_x": audio_s / total, "share_of_floor": decode / total}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--yamnet", type=Path, required=True, help="YAMNet SavedModel folder")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--annotations", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder for the int8 file and the results")
    ap.add_argument("--calibration", type=int, default=200, help="calibration blocks (default 200)")
    ap.add_argument("--folds", type=int, default=FAMILY_FOLDS)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--skip", choices=("cv", "timing", "int8-heads"),
                    help="leave out the cross-validation, the timing, or the CV of heads trained on int8 embeddings")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = Config.load(None, dict(s.split("=", 1) for s in args.sets))
    t0 = time.perf_counter()
    path = args.work / "yamnet_int8_block16.tflite"
    if not path.exists():
        clips = [args.data / "Parsed_Capuchinbird_Clips", args.data / "Parsed_Not_Capuchinbird_Clips"]
        convert_int8(args.yamnet, calibration_blocks(clips, BLOCK_FRAMES, args.calibration, seed=cfg.seed), path)
    print(f"int8 YAMNet: {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
    backbone = Int8Yamnet(path)
    tables, audio, families = annotated_recordings(args.annotations, args.data)
    result = {"int8_file_bytes": path.stat().st_size, "calibration_blocks": args.calibration}
    if args.skip != "cv":
        fold = assign_folds(tables, families, args.folds, cfg.seed)
        data = SiteData(cfg, args.data, tables, audio, families, backbone=backbone)
        shipped = load_model()  # the shipped float head, on the int8 embeddings
        float_scores = {s: (f.start_s, shipped.head.frame_scores(shipped.head.frame_inputs(f)))
                        for s, f in data.rec_frames.items()}
        cv = nested_cv(fold, fixed_scorer(float_scores), tables, data.durations, data.window_s, data.hop_s)
        result["shipped_float_head_on_int8"] = cv["rows"]["nested"]
        if args.skip != "int8-heads":
            cv = nested_cv(fold, data.score_fold, tables, data.durations, data.window_s, data.hop_s, echo=print)
            result["int8_heads_nested"] = cv["rows"]["nested"]
            result["int8_per_file"] = cv["per_file"]
        # what `yamcap export --int8` does to a float-trained head: trained on float embeddings,
        # run on the int8 ones (the held-out folds' recordings)
        float_data = SiteData(cfg, args.data, tables, audio, families)
        heads: dict = {}

        def float_head_int8_scores(train, test):
            key = tuple(sorted(train))
            if key not in heads:
                heads[key] = float_data.fit(key)
            return {s: (data.rec_frames[s].start_s, heads[key].frame_scores(data.inputs(data.rec_frames[s]))) for s in test}

        cv = nested_cv(fold, float_head_int8_scores, tables, data.durations, data.window_s, data.hop_s, echo=print)
        result["float_heads_int8_inference_nested"] = cv["rows"]["nested"]
        result["float_heads_int8_inference_per_file"] = cv["per_file"]
        for key in ("shipped_float_head_on_int8", "int8_heads_nested", "float_heads_int8_inference_nested"):
            if key not in result:
                continue
            r = result[key]
            print(f"{key}: P {r['event_precision']:.3f} R {r['event_recall']:.3f} F1 {r['event_f1']:.3f} "
                  f"MAE {r['count_mae']:.3f} exact {r['count_exact_rate']:.3f} FP/h {r['false_events_per_hour']:.2f}")
    if args.skip != "timing":
        head = load_model().head  # the head's cost is what counts here
        result["timing"] = {t: timing([audio[s] for s in sorted(audio)], backbone, head, t) for t in (1, 2)}
        for t, r in result["timing"].items():
            print(f"{t} thread(s): decode floor {r['decode_x']:.0f}x, pipeline {r['pipeline_x']:.0f}x, "
                  f"share {r['share_of_floor']:.2f}")
    (args.work / f"int8_head{'' if not args.skip else '-no-' + args.skip}.json").write_text(
        json.dumps(result, indent=1, default=float))
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
