"""The agile loop on real audio: label 10 false events of a forest recording in the review
app, retrain, and the recording's count drops. Needs ../shared (real YAMNet and data)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from yamnet_capuchin.annotations import label_at, read_table, table_name  # noqa: E402
from yamnet_capuchin.config import Config  # noqa: E402
from yamnet_capuchin.count import count_files  # noqa: E402
from yamnet_capuchin.dataset import find_forest_dir  # noqa: E402
from yamnet_capuchin.detectors import load_model  # noqa: E402
from yamnet_capuchin.review.app import create_app  # noqa: E402
from yamnet_capuchin.train import train_yamnet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "data" / "annotations" / "forest"
RECORDING = "recording_29"  # a dense bird chorus without a Capuchinbird call (data/annotations/forest)


@pytest.mark.realdata
def test_labelling_ten_false_events_and_retraining_lowers_the_count(real_yamnet, real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(real_yamnet))
    recording = find_forest_dir(real_data) / f"{RECORDING}.mp3"
    truth = read_table(TRUTH / table_name(RECORDING))
    assert not [s for s in truth if s.label == "capuchin"]
    cfg = Config()  # clips + call-free backgrounds, no annotations: the model a new user starts from
    train_yamnet(real_data, tmp_path / "model", cfg, progress=False, echo=lambda m: None)
    cfg.events.threshold = 0.1  # a reviewer counts with a loose on-threshold to see many candidates
    detector = load_model(tmp_path / "model")
    run_dir = tmp_path / "run"
    before = count_files(detector, [recording], run_dir, cfg, progress=False).results[0].events
    assert len(before) >= 10, f"the starting model finds only {len(before)} events in {RECORDING}"

    app = create_app(run_dir, data_dir=real_data, warm_up=False, port=8765)
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"X-Yamcap-Token": app.state.token})
    candidates = sorted(client.get("/api/candidates").json(), key=lambda c: -c["score"])[:10]
    for c in candidates:
        label = label_at(truth, c["start_s"], c["end_s"])
        assert label.startswith("other"), (c, label)
        assert client.post("/api/labels", json={"id": c["id"], "label": label}).status_code == 200
    saved = read_table(run_dir / "annotations" / table_name(RECORDING))
    assert len(saved) == 10 and all(s.label.startswith("other") for s in saved)

    assert client.post("/api/retrain", json={}).status_code == 202
    t0 = time.time()
    while (job := client.get("/api/retrain").json())["state"] == "running":
        assert time.time() - t0 < 900, "retraining took over 15 min"
        time.sleep(1.0)
    assert job["state"] == "done", job
    new = next(r["new"] for r in job["result"]["per_file"] if Path(r["file"]).stem == RECORDING)
    print(f"{RECORDING}: {len(before)} events before, {new} after labelling 10 false events")
    assert new < len(before)
