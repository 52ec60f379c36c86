"""`yamcap review`: the pure candidate logic and the JSON API (Starlette TestClient, no model)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("jinja2", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")

import warnings  # noqa: E402

import soundfile as sf  # noqa: E402

with warnings.catch_warnings():  # starlette >= 1.x prefers httpx2 but still works with httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from yamnet_capuchin import annotations as ann  # noqa: E402
from yamnet_capuchin.review import candidates as cands  # noqa: E402
from yamnet_capuchin.review.app import create_app  # noqa: E402

SR = 16000
# (file, start, end, score, label to give in test_stats); rec_d has no events
EVENTS = [
    ("audio/rec_a.wav", 2.0, 4.5, 0.9, "capuchin"),
    ("audio/rec_a.wav", 8.0, 9.5, 0.6, "other:insect"),
    ("audio/rec_a.wav", 12.0, 13.0, 0.3, "unsure"),
    ("audio/rec_b.wav", 1.0, 3.0, 0.95, "capuchin"),
    ("audio/rec_b.wav", 6.0, 7.0, 0.4, "other"),
    ("audio/rec_c.wav", 3.0, 5.0, 0.7, None),
]


def _write_wav(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 800 * t) * (np.sin(t) > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR)


def build_run(tmp_path: Path) -> Path:
    """A `yamcap count` output folder tmp/run with events.csv, summary.json and state records,
    and the recordings in tmp/audio; events.csv's paths are relative to tmp."""
    for i, name in enumerate(["rec_a", "rec_b", "rec_c", "rec_d"]):
        _write_wav(tmp_path / "audio" / f"{name}.wav", 16.0, i)
    run_dir = tmp_path / "run"
    (run_dir / ".yamcap-state").mkdir(parents=True)
    with open(run_dir / "events.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "start_s", "end_s", "score"])
        for f, a, b, s, _ in EVENTS:
            w.writerow([f, f"{a:.3f}", f"{b:.3f}", f"{s:.4f}"])
    for i, name in enumerate(["rec_a", "rec_b", "rec_c", "rec_d"]):
        (run_dir / ".yamcap-state" / f"{i}.json").write_text(json.dumps(
            {"path": f"audio/{name}.wav", "duration_s": 16.0, "events": []}))
    (run_dir / "summary.json").write_text(json.dumps(
        {"files": 4, "model": {"kind": "yamnet", "threshold": 0.5}, "config": {"audio": {"backend": "soundfile"}}}))
    return run_dir


@pytest.fixture
def run(tmp_path, monkeypatch):
    """:func:`build_run` with the working directory at tmp (events.csv's paths resolve)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YAMCAP_DATA", raising=False)
    return build_run(tmp_path)


BASE_URL = "http://127.0.0.1:8765"


def make_client(run_dir, **kw):
    """A client of the app as the page uses it: at 127.0.0.1:8765 with the launch token's header."""
    kw.setdefault("warm_up", False)
    kw.setdefault("port", 8765)
    app = create_app(run_dir, **kw)
    headers = {"X-Yamcap-Token": app.state.token} if app.state.token else {}
    return TestClient(app, base_url=BASE_URL, headers=headers)


def ids_by_event(client) -> dict[tuple[str, float], str]:
    return {(c["file"], c["start_s"]): c["id"] for c in client.get("/api/candidates").json()}


def wait_job(client, path, timeout=20.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = client.get(path).json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"{path} still running")


# --- pure logic ------------------------------------------------------------------------------

def test_candidate_ids_are_stable_and_distinct():
    a = cands.candidate_id("x/rec.wav", 1.0, 2.5)
    assert a == cands.candidate_id("x/rec.wav", 1.001, 2.499)  # rounded to 10 ms
    assert a != cands.candidate_id("y/rec.wav", 1.0, 2.5)
    assert len(a) == 12 and int(a, 16) >= 0


def test_recording_stems_follow_count():
    stems = cands.recording_stems(["a/rec.wav", "b/rec.wav", "c/other.mp3"])
    assert stems["c/other.mp3"] == "other"
    assert stems["a/rec.wav"].startswith("rec_") and stems["a/rec.wav"] != stems["b/rec.wav"]


def test_merge_labels_by_note_then_by_span():
    c1 = cands.Candidate(cands.candidate_id("r.wav", 1, 2), "r.wav", 1.0, 2.0, 0.9)
    c2 = cands.Candidate(cands.candidate_id("r.wav", 5, 6), "r.wav", 5.0, 6.0, 0.5)
    tables = {"r": [
        ann.Selection(0.8, 2.4, "capuchin", note=cands.review_note(c1.id)),  # edited bounds, found by id
        ann.Selection(5.1, 5.9, "other:bird"),  # hand-made, found by span
        ann.Selection(9.0, 12.0, "unsure", note=cands.review_note("abcdefabcdef", cands.RANDOM, 0.42)),
    ]}
    out = {c.id: c for c in cands.merge_labels([c1, c2], tables, {"r.wav": "r"})}
    assert (out[c1.id].label, out[c1.id].start_s, out[c1.id].end_s) == ("capuchin", 0.8, 2.4)
    assert out[c2.id].label == "other:bird"
    extra = out["abcdefabcdef"]
    assert (extra.label, extra.source, extra.score, extra.start_s) == ("unsure", cands.RANDOM, 0.42, 9.0)
    assert c1.label is None  # inputs untouched


def test_precision_and_counts_by_hand():
    cs = [cands.Candidate(cands.candidate_id(f, a, b), f, a, b, s, cands.EVENT, lab) for f, a, b, s, lab in EVENTS]
    rows = {r["threshold"]: r for r in cands.precision_by_threshold(cs, [0.0, 0.5, 0.65, 0.95, 0.99])}
    # judged: 0.9 C, 0.6 O, 0.95 C, 0.4 O (unsure and unlabelled left out)
    assert (rows[0.0]["n"], rows[0.0]["calls"], rows[0.0]["precision"]) == (4, 2, 0.5)
    assert rows[0.5]["precision"] == pytest.approx(2 / 3)
    assert rows[0.65]["precision"] == 1.0 and rows[0.95]["n"] == 1
    assert rows[0.99] == {"threshold": 0.99, "n": 0, "calls": 0, "precision": None}
    counts = {r["file"]: r for r in cands.counts_before_after(cs, ["audio/rec_d.wav"])}
    assert [(counts[f]["before"], counts[f]["after"]) for f in sorted(counts)] == [(3, 2), (2, 1), (1, 1), (0, 0)]


def test_pick_extra_uncertain_hard_negative_random():
    hop = 0.48
    t = [i * hop for i in range(100)]
    scores_a = [0.05] * 100
    scores_a[20:24] = [0.45, 0.5, 0.55, 0.6]  # an uncertain stretch
    scores_a[60:62] = [0.9, 0.95]  # covered by an event
    scores_b = [0.02] * 100
    scores_b[40] = 0.15  # the top of a recording labelled call-free (below the uncertain band)
    tracks = {"a.wav": cands.FrameTrack(t, scores_a, 0.96, 48.0), "b.wav": cands.FrameTrack(t, scores_b, 0.96, 48.0)}
    events = [cands.Candidate("e1", "a.wav", 28.5, 30.5, 0.95), cands.Candidate("e2", "b.wav", 3.0, 4.0, 0.8, label="other")]
    params = cands.ExtraParams(n_uncertain=5, n_hard_negative=1, n_random=3, seed=7)
    picks = cands.pick_extra(tracks, events, params)
    assert picks == cands.pick_extra(tracks, events, params)  # seeded
    by = {}
    for p in picks:
        by.setdefault(p.source, []).append(p)
    assert by[cands.UNCERTAIN][0].file == "a.wav" and 9.0 < by[cands.UNCERTAIN][0].start_s < 11.5
    assert [p.file for p in by[cands.HARD_NEGATIVE]] == ["b.wav"] and by[cands.HARD_NEGATIVE][0].score == 0.15
    assert len(by[cands.RANDOM]) == 3
    spans = [(p.file, p.start_s, p.end_s) for p in picks] + [(e.file, e.start_s, e.end_s) for e in events]
    for i, (f, a, b) in enumerate(spans):  # no pick overlaps an event or another pick
        for g, x, y in spans[i + 1:]:
            assert f != g or b <= x or y <= a


# --- API ---------------------------------------------------------------------------------------

def test_candidates_list(run):
    client = make_client(run)
    items = client.get("/api/candidates").json()
    assert len(items) == len(EVENTS)
    assert {"id", "file", "start_s", "end_s", "score", "label"} <= set(items[0])
    assert [c["score"] for c in items] == sorted((e[3] for e in EVENTS), reverse=True)
    assert all(c["label"] is None for c in items)
    assert {c["file"] for c in items} == {"audio/rec_a.wav", "audio/rec_b.wav", "audio/rec_c.wav"}
    by_file = client.get("/api/candidates", params={"sort": "file"}).json()
    assert [(c["file"], c["start_s"]) for c in by_file] == sorted((e[0], e[1]) for e in EVENTS)
    page = client.get("/")
    assert page.status_code == 200 and "review.js" in page.text and "text/html" in page.headers["content-type"]


def test_label_writes_raven_table(run):
    client = make_client(run)
    ids = ids_by_event(client)
    r = client.post("/api/labels", json={"id": ids[("audio/rec_a.wav", 2.0)], "label": "capuchin"})
    assert r.status_code == 200 and r.json()["progress"]["labelled"] == 1
    r = client.post("/api/labels", json={"id": ids[("audio/rec_a.wav", 8.0)], "label": "other:insect",
                                         "start_s": 7.8, "end_s": 9.9})
    assert r.status_code == 200 and r.json()["candidate"]["start_s"] == 7.8
    table = run / "annotations" / ann.table_name("rec_a")
    rows = ann.read_table(table)
    assert [(s.begin_s, s.end_s, s.label) for s in rows] == [(2.0, 4.5, "capuchin"), (7.8, 9.9, "other:insect")]
    header = table.read_text().splitlines()[0].split("\t")
    assert "Annotation" in header and header[:5] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)"]
    assert not list((run / "annotations").glob(".*part"))  # nothing half-written left behind
    # filter by label state
    labelled = client.get("/api/candidates", params={"state": "call"}).json()
    assert [c["start_s"] for c in labelled] == [2.0]


def test_relabel_replaces_first_label(run):
    client = make_client(run)
    cid = ids_by_event(client)[("audio/rec_b.wav", 1.0)]
    assert client.post("/api/labels", json={"id": cid, "label": "unsure"}).status_code == 200
    assert client.post("/api/labels", json={"id": cid, "label": "capuchin", "end_s": 3.4}).status_code == 200
    assert client.post("/api/labels", json={"id": cid, "label": "Other:Bird"}).status_code == 200
    rows = ann.read_table(run / "annotations" / ann.table_name("rec_b"))
    assert [(s.begin_s, s.end_s, s.label) for s in rows] == [(1.0, 3.4, "other:bird")]


def test_label_errors(run):
    client = make_client(run)
    cid = ids_by_event(client)[("audio/rec_b.wav", 1.0)]
    for bad in ("call", "other:", "other:Has Space", "", "capuchin;rm"):
        assert client.post("/api/labels", json={"id": cid, "label": bad}).status_code == 422, bad
    assert client.post("/api/labels", json={"id": "0123456789ab", "label": "capuchin"}).status_code == 404
    assert client.post("/api/labels", json={"id": cid, "label": "capuchin", "start_s": 5, "end_s": 4}).status_code == 422
    assert client.post("/api/labels", content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    assert not (run / "annotations").exists()  # nothing written by a refused label


def test_failed_write_leaves_table_as_it_was(run, monkeypatch):
    client = make_client(run)
    cid = ids_by_event(client)[("audio/rec_c.wav", 3.0)]
    assert client.post("/api/labels", json={"id": cid, "label": "capuchin"}).status_code == 200
    table = run / "annotations" / ann.table_name("rec_c")
    before = table.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("yamnet_capuchin.fileio.os.replace", broken_replace)
    r = client.post("/api/labels", json={"id": cid, "label": "other:noise"})
    assert r.status_code == 500 and "not saved" in r.json()["error"]
    assert table.read_bytes() == before
    assert sorted(p.name for p in (run / "annotations").iterdir()) == [table.name]


def test_reload_resumes_from_tables(run):
    client = make_client(run)
    ids = ids_by_event(client)
    labels = {("audio/rec_a.wav", 2.0): "capuchin", ("audio/rec_b.wav", 6.0): "other:frog",
              ("audio/rec_c.wav", 3.0): "unsure"}
    for key, label in labels.items():
        assert client.post("/api/labels", json={"id": ids[key], "label": label, "start_s": key[1] - 0.5}).status_code == 200
    fresh = make_client(run)  # a new server process reads the tables back
    got = {(c["file"], c["event_start_s"]): (c["label"], c["start_s"], c["id"]) for c in fresh.get("/api/candidates").json()}
    for key, label in labels.items():
        assert got[key] == (label, key[1] - 0.5, ids[key])
    assert sum(v[0] is not None for v in got.values()) == 3
    assert fresh.get("/api/stats").json()["progress"]["labelled"] == 3
    # a table edited outside the app (e.g. in Raven) is read on page reload
    table = run / "annotations" / ann.table_name("rec_a")
    rows = [s if s.begin_s != 1.5 else ann.relabel(s, "other:hoot") for s in ann.read_table(table)]
    ann.write_table(table, rows)
    fresh.get("/")
    again = {c["id"]: c["label"] for c in fresh.get("/api/candidates").json()}
    assert again[ids[("audio/rec_a.wav", 2.0)]] == "other:hoot"


def test_stats_by_hand(run):
    client = make_client(run)
    ids = ids_by_event(client)
    for f, a, _, _, label in EVENTS:
        if label:
            assert client.post("/api/labels", json={"id": ids[(f, a)], "label": label}).status_code == 200
    s = client.get("/api/stats").json()
    assert s["progress"] == {"total": 6, "labelled": 5, "call": 2, "other": 2, "unsure": 1, "unlabelled": 1}
    prec = {r["threshold"]: r for r in s["precision"]}
    assert prec[0.0]["precision"] == 0.5 and prec[0.0]["n"] == 4  # 2 calls of 4 judged events
    assert prec[0.5]["precision"] == pytest.approx(2 / 3)  # 0.6 other, 0.9 and 0.95 calls
    assert prec[0.65]["precision"] == 1.0 and prec[0.95]["n"] == 1
    counts = {r["file"]: (r["before"], r["after"]) for r in s["counts"]}
    assert counts == {"audio/rec_a.wav": (3, 2), "audio/rec_b.wav": (2, 1), "audio/rec_c.wav": (1, 1),
                      "audio/rec_d.wav": (0, 0)}
    assert (s["total_before"], s["total_after"]) == (6, 4)


def test_image_and_audio(run):
    client = make_client(run)
    cid = ids_by_event(client)[("audio/rec_a.wav", 2.0)]
    img = client.get(f"/api/image/{cid}.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / ".review-cache").glob(f"{cid}-*.png"))  # cached on disk
    wav = client.get(f"/api/audio/{cid}.wav")
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    import io

    data, sr = sf.read(io.BytesIO(wav.content))
    assert sr == 16000 and len(data) == int((4.5 + 2 - 0.0) * sr)  # 0.0 .. 6.5 s (context cut at 0)
    # bounds edited -> a new image for the new span
    client.post("/api/labels", json={"id": cid, "label": "capuchin", "start_s": 2.5})
    client.get(f"/api/image/{cid}.png")
    assert len(list((run / ".review-cache").glob(f"{cid}-*.png"))) == 2


def test_audio_found_through_audio_argument(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "run")  # events.csv's relative paths no longer lead anywhere
    client = make_client(run)
    cid = ids_by_event(client)[("audio/rec_b.wav", 1.0)]
    r = client.get(f"/api/audio/{cid}.wav")
    assert r.status_code == 200  # relative to the run folder's parent
    moved = tmp_path / "elsewhere"
    (tmp_path / "audio").rename(moved)
    client = make_client(run)
    assert client.get(f"/api/audio/{cid}.wav").status_code == 404
    client = make_client(run, audio=[moved])
    assert client.get(f"/api/audio/{cid}.wav").status_code == 200


@pytest.mark.parametrize("path", [
    "/api/audio/../../etc/passwd",
    "/api/audio/%2e%2e/%2e%2e/etc/passwd",
    "/api/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/image/..%2F..%2Fpyproject.toml",
    "/api/audio//etc/passwd",
    "/api/audio/%2Fetc%2Fpasswd",
    "/api/image/%2Fetc%2Fpasswd.png",
    "/api/audio/audio%2Frec_a.wav",
    "/api/image/rec_a.png",
    "/static/../../pyproject.toml",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/..%2F..%2Fapp.py",
    "/static//etc/passwd",
    "/etc/passwd",
])
def test_path_traversal_is_404(run, path):
    client = make_client(run)
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"root:" not in r.content and b"[build-system]" not in r.content and b"create_app" not in r.content


def test_static_files_served(run):
    client = make_client(run)
    assert client.get("/static/review.js").status_code == 200
    assert client.get("/static/review.css").status_code == 200


def test_extra_candidates_with_fake_scorer(run):
    seen = {}

    def scorer(paths):
        seen.update(paths)
        t = [i * 0.48 for i in range(31)]
        s = [0.05] * 31
        s[20:23] = [0.4, 0.5, 0.6]
        return {f: cands.FrameTrack(t, s, 0.96, 16.0) for f in paths}

    params = cands.ExtraParams(n_uncertain=2, n_hard_negative=2, n_random=2, seed=3)
    client = make_client(run, scorer=scorer, extra_params=params)
    before = client.get("/api/candidates").json()
    assert client.post("/api/extra", json={}).status_code == 202
    job = wait_job(client, "/api/extra")
    assert job["state"] == "done", job
    assert set(seen) == {"audio/rec_a.wav", "audio/rec_b.wav", "audio/rec_c.wav", "audio/rec_d.wav"}
    after = client.get("/api/candidates").json()
    extra = [c for c in after if c["source"] != "event"]
    assert len(after) == len(before) + job["result"]["added"] and extra
    assert {c["source"] for c in extra} <= {"uncertain", "random"}  # no recording is labelled call-free yet
    # GET ?extra=1 also starts it (already done: nothing new, no error)
    assert len(client.get("/api/candidates", params={"extra": 1}).json()) >= len(after)
    wait_job(client, "/api/extra")
    pick = extra[0]
    assert client.post("/api/labels", json={"id": pick["id"], "label": "other:rain"}).status_code == 200
    assert client.get(f"/api/image/{pick['id']}.png").status_code == 200
    fresh = make_client(run, scorer=scorer)
    got = {c["id"]: c for c in fresh.get("/api/candidates").json()}
    assert got[pick["id"]]["label"] == "other:rain" and got[pick["id"]]["source"] == pick["source"]


def test_retrain_needs_a_data_folder(run, tmp_path, monkeypatch):
    def train_yamnet(data_dir, out_dir, config, progress=True, echo=print):
        raise AssertionError("must not be called")

    monkeypatch.setattr("yamnet_capuchin.train.train_yamnet", train_yamnet)
    monkeypatch.delenv("YAMCAP_DATA", raising=False)
    client = make_client(run)  # no --data / YAMCAP_DATA
    r = client.post("/api/retrain", json={})
    assert r.status_code == 409 and "--data" in r.json()["error"]
    assert client.get("/api/retrain").json()["state"] == "idle"


def test_retrain_with_fake_trainer(run, tmp_path, monkeypatch):
    from types import SimpleNamespace

    calls = {}

    def fake_train_yamnet(data_dir, out_dir, config, progress=True, echo=print, warm_start_from=None):
        calls["train"] = dict(data_dir=str(data_dir), out_dir=str(out_dir), annotations=config.data.annotations,
                              complete=config.data.complete_annotations, audio_dirs=config.data.audio_dirs,
                              progress=progress, warm=warm_start_from)
        Path(out_dir).mkdir(parents=True)
        return {"test": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "pr_auc": 0.9}}

    def fake_load_model(model_dir, **kw):
        calls["model"] = str(model_dir)
        return SimpleNamespace(config=SimpleNamespace(backbone=None, audio=SimpleNamespace(backend="soundfile")))

    def fake_count_files(detector, paths, out_dir, config, plots=False, progress=True, echo=print):
        calls["count"] = ([str(p) for p in paths], str(out_dir))
        results = [SimpleNamespace(path=str(p), events=[1] * (2 if "rec_a" in str(p) else 0)) for p in paths]
        return SimpleNamespace(results=results, failures=[])

    monkeypatch.setattr("yamnet_capuchin.train.train_yamnet", fake_train_yamnet)
    monkeypatch.setattr("yamnet_capuchin.detectors.load_model", fake_load_model)
    monkeypatch.setattr("yamnet_capuchin.count.count_files", fake_count_files)
    (tmp_path / "data").mkdir()
    client = make_client(run, data_dir=tmp_path / "data")
    ids = ids_by_event(client)
    client.post("/api/labels", json={"id": ids[("audio/rec_a.wav", 8.0)], "label": "other:insect"})
    r = client.post("/api/retrain", json={})
    assert r.status_code == 202, r.text
    job = wait_job(client, "/api/retrain")
    assert job["state"] == "done", job
    assert calls["train"]["annotations"] == [str(run / "annotations")] and calls["train"]["complete"] == []
    assert calls["train"]["audio_dirs"] == ["audio"] and calls["train"]["progress"] is False
    import numpy as np  # the first retrain has no head of its own yet: it starts from the packaged default's

    from yamnet_capuchin.detectors import DEFAULT_MODEL_DIR
    with np.load(DEFAULT_MODEL_DIR / "head.npz") as shipped:
        assert np.array_equal(calls["train"]["warm"].weights_["w2"], shipped["w2"])
    assert calls["train"]["out_dir"] == str(run / "retrained" / "model") == calls["model"]
    assert calls["count"][1] == str(run / "retrained") and len(calls["count"][0]) == 4
    per_file = {r["file"]: (r["old"], r["labelled"], r["new"]) for r in job["result"]["per_file"]}
    assert per_file == {"audio/rec_a.wav": (3, 2, 2), "audio/rec_b.wav": (2, 2, 0), "audio/rec_c.wav": (1, 1, 0),
                        "audio/rec_d.wav": (0, 0, 0)}
    assert (job["result"]["total_old"], job["result"]["total_new"]) == (6, 2)
    assert job["result"]["metrics"]["f1"] == 0.85
    assert client.get("/api/stats").json()["retrain"]["state"] == "done"


def test_retrain_error_is_reported(run, tmp_path, monkeypatch):
    def failing_train_yamnet(data_dir, out_dir, config, progress=True, echo=print, warm_start_from=None):
        from yamnet_capuchin.errors import YamcapError

        raise YamcapError("the train split needs clips of both classes")

    monkeypatch.setattr("yamnet_capuchin.train.train_yamnet", failing_train_yamnet)
    (tmp_path / "data").mkdir()
    client = make_client(run, data_dir=tmp_path / "data")
    assert client.post("/api/retrain", json={}).status_code == 202
    job = wait_job(client, "/api/retrain")
    assert job["state"] == "error" and "both classes" in job["message"]


def test_not_a_run_dir(tmp_path):
    from yamnet_capuchin.errors import YamcapError

    with pytest.raises(YamcapError, match="not a `yamcap count` output folder"):
        create_app(tmp_path)


def test_cli_review_without_extra(monkeypatch):
    from typer.testing import CliRunner

    import yamnet_capuchin.review as review
    from yamnet_capuchin.cli import app

    monkeypatch.setattr(review, "missing_dependencies", lambda: ["starlette"])
    result = CliRunner().invoke(app, ["review", "somewhere"])
    assert result.exit_code == 2
    out = result.output  # stdout and stderr together
    assert 'pip install -e ".[review]"' in out
    assert len([line for line in out.splitlines() if line.strip()]) == 1


def test_cli_review_help():
    from typer.testing import CliRunner

    from yamnet_capuchin.cli import app

    result = CliRunner().invoke(app, ["review", "--help"])
    assert result.exit_code == 0 and "--annotations" in result.output and "--no-browser" in result.output


def test_a_retrain_starts_from_the_last_retrained_head_of_the_same_shape(tmp_path):
    import json

    import numpy as np

    from yamnet_capuchin.config import Config
    from yamnet_capuchin.detectors import MODEL_FORMAT
    from yamnet_capuchin.head import FrameHead
    from yamnet_capuchin.review.retrain import previous_head

    cfg = Config()
    model_dir = tmp_path / "retrained" / "model"
    assert previous_head(model_dir, cfg) is None  # no retrain yet
    model_dir.mkdir(parents=True)
    h = cfg.head
    params = {**FrameHead(hidden_units=h.hidden_units, context=h.context, inputs=h.inputs).get_params(), "pooling": "max"}
    meta = {"format": MODEL_FORMAT, "kind": "yamnet", "backbone": {"name": "yamnet"}, "head_params": params}
    (model_dir / "model.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(0)
    weights = {"w1": rng.standard_normal((1024, h.hidden_units)).astype(np.float32),
               "b1": np.zeros(h.hidden_units, np.float32), "w2": np.ones(h.hidden_units, np.float32),
               "b2": np.zeros(1, np.float32)}
    np.savez(model_dir / "head.npz", **weights)
    head = previous_head(model_dir, cfg)
    assert head is not None and head.pooling == "max" and np.array_equal(head.weights_["w1"], weights["w1"])
    other = Config()
    other.backbone.name = "birdnet"  # a head of the same shape on another backbone's embeddings
    assert previous_head(model_dir, other) is None
    cfg.head.hidden_units = 64  # the configuration now trains another shape: start from scratch
    assert previous_head(model_dir, cfg) is None
    (model_dir / "model.json").write_text(json.dumps({**meta, "kind": "cnn"}))
    assert previous_head(Path(model_dir), Config()) is None
