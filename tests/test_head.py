import numpy as np
import pytest

from yamnet_capuchin.backbones import Frames
from yamnet_capuchin.errors import ModelError
from yamnet_capuchin.head import FrameHead, head_inputs, pad_bags, with_context


def _bags(n, rng, shift):
    return [rng.standard_normal((int(rng.integers(2, 7)), 16)).astype(np.float32) + shift for _ in range(n)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    pos, neg = _bags(40, rng, 1.0), _bags(40, rng, -1.0)
    x = pos + neg
    y = np.array([1] * 40 + [0] * 40)
    return x, y


def test_pad_bags():
    x, m = pad_bags([np.ones((2, 3)), np.ones((4, 3))])
    assert x.shape == (2, 4, 3) and m.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_fit_predict_save_load(data, pooling, tmp_path):
    x, y = data
    head = FrameHead(hidden_units=8, pooling=pooling, max_epochs=30, patience=30, batch_size=16).fit(x, y, x[::4], y[::4])
    scores = head.predict_proba(x)[:, 1]
    assert scores.shape == (80,)
    assert scores[y == 1].min() > scores[y == 0].max()  # separable toy data
    assert "val_loss" in head.history_ and len(head.history_["loss"]) >= 1
    head.save(tmp_path / "h.npz")
    with np.load(tmp_path / "h.npz") as saved:  # a fixed order: the shipped head.npz is reproduced byte for byte
        assert saved.files[:4] == ["w1", "b1", "w2", "b2"]
    again = FrameHead.load(tmp_path / "h.npz", **head.get_params())
    assert np.allclose(again.predict_proba(x)[:, 1], scores)
    f = head.frame_scores(x[0])
    assert f.shape == (x[0].shape[0],) and ((f >= 0) & (f <= 1)).all()


def test_linear_probe_saves_only_the_output_layer(data, tmp_path):
    x, y = data
    head = FrameHead(hidden_units=0, pooling="max", learning_rate=0.02, max_epochs=40, patience=40, batch_size=16)
    head.fit(x, y, x[::4], y[::4])
    assert set(head.weights_) == {"w2", "b2"} and head.weights_["w2"].shape == (16,)
    scores = head.predict_proba(x)[:, 1]
    assert scores[y == 1].min() > scores[y == 0].max()  # the toy classes are linearly separable
    head.save(tmp_path / "h.npz")
    assert np.allclose(FrameHead.load(tmp_path / "h.npz", **head.get_params()).predict_proba(x)[:, 1], scores)
    with pytest.raises(ModelError, match="incomplete"):  # weights without a hidden layer, params with one
        FrameHead.load(tmp_path / "h.npz", **{**head.get_params(), "hidden_units": 8})


def test_sample_weight_zero_ignores_a_clip(data):
    """Clips weighted 0 do not pull the head: mislabelled ones are learnt only without weights."""
    x, y = data
    wrong = y.copy()
    wrong[:8] = 0  # 8 positives labelled negative
    weight = np.ones(len(y))
    weight[:8] = 0.0
    params = {"hidden_units": 8, "pooling": "max", "max_epochs": 40, "patience": 40, "batch_size": 16,
              "learning_rate": 0.01}
    ignored = FrameHead(**params).fit(x, wrong, x[::4], y[::4], sample_weight=weight).predict_proba(x[:8])[:, 1]
    learnt = FrameHead(**params).fit(x, wrong, x[::4], y[::4]).predict_proba(x[:8])[:, 1]
    assert ignored.min() > 0.95 and learnt.mean() < ignored.mean() - 0.1  # measured: 1.00 vs 0.80


def test_with_context_appends_neighbour_mean():
    e = np.arange(12, dtype=np.float32).reshape(4, 3)  # frame t holds 3t, 3t+1, 3t+2
    c1 = with_context(e, 1)
    assert c1.shape == (4, 6) and np.array_equal(c1[:, :3], e)
    assert np.allclose(c1[1, 3:], (e[0] + e[2]) / 2)
    assert np.allclose(c1[0, 3:], (e[0] + e[1]) / 2)  # the clip's first frame stands in for t-1
    assert np.allclose(with_context(e, 2)[3, 3:], (e[1] + e[2] + e[3] + e[3]) / 4)
    assert with_context(e, 0) is e
    assert with_context(e[:1], 1).shape == (1, 6)


def test_context_head_uses_frame_order(data, tmp_path):
    """With context the score of a frame changes with its neighbours, and the parameter
    survives save/load."""
    x, y = data
    head = FrameHead(hidden_units=8, pooling="max", context=1, max_epochs=30, patience=30, batch_size=16)
    head.fit(x, y, x[::4], y[::4])
    scores = head.predict_proba(x)[:, 1]
    assert scores[y == 1].min() > scores[y == 0].max()
    assert head.weights_["w1"].shape == (32, 8)
    bag = np.concatenate([x[0], x[-1]])  # positive frames, then negative ones
    alone = head.frame_scores(x[0])
    mixed = head.frame_scores(bag)[: len(x[0])]
    assert not np.allclose(alone[-1], mixed[len(x[0]) - 1])  # last positive frame now has a negative neighbour
    head.save(tmp_path / "h.npz")
    again = FrameHead.load(tmp_path / "h.npz", **head.get_params())
    assert again.context == 1 and np.allclose(again.predict_proba(x)[:, 1], scores)


@pytest.mark.parametrize("hidden", [8, 0])
@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_numpy_inference_matches_keras_model(data, pooling, hidden):
    """The NumPy forward pass on each clip alone reproduces the trained Keras network on
    padded batches (clips of 2-6 frames; the network skips padded frames). ``hidden`` = 0 is
    the linear probe (no hidden layer)."""
    x, y = data
    head = FrameHead(hidden_units=hidden, pooling=pooling, max_epochs=3, patience=3)
    head.fit(x, y, x[:8], y[:8])
    net = head._build(16)
    assert ("w1" in head.weights_) == (hidden > 0)
    if hidden:
        net.hidden.set_weights([head.weights_["w1"], head.weights_["b1"]])
    net.out.set_weights([head.weights_["w2"][:, None], head.weights_["b2"]])
    if pooling == "attention":
        net.att.set_weights([head.weights_["wa"][:, None], head.weights_["ba"]])
    xx, mm = pad_bags(x[:12])
    assert mm.sum(axis=1).min() < mm.shape[1]  # some clips are padded
    keras_scores = np.asarray(net([xx, mm]))[:, 0]
    assert np.allclose(keras_scores, head.predict_proba(x[:12])[:, 1], atol=1e-5)


def test_unfitted_head_raises():
    from yamnet_capuchin.errors import ModelError

    with pytest.raises(ModelError):
        FrameHead().frame_scores(np.zeros((1, 4), np.float32))


def test_spectral_shape_inputs_follow_the_embeddings_and_ignore_gain():
    rng = np.random.default_rng(1)
    emb, profile = rng.random((5, 8)).astype(np.float32), rng.standard_normal((5, 64)).astype(np.float32)
    frames = Frames(np.arange(5) * 0.48, emb, np.zeros((5, 0)), profile)
    x = head_inputs(frames, "embeddings+spectral_shape")
    assert x.shape == (5, 72) and x.dtype == np.float32 and np.array_equal(x[:, :8], emb)
    assert np.allclose(x[:, 8:].mean(axis=1), 0, atol=1e-6)  # band mean removed
    louder = Frames(frames.start_s, emb, frames.class_scores, profile + 3.0)  # +3 in log energy = gain
    assert np.allclose(head_inputs(louder, "embeddings+spectral_shape"), x, atol=1e-5)
    assert head_inputs(frames) is emb
    with pytest.raises(ModelError, match="log-mel"):
        head_inputs(Frames(frames.start_s, emb, frames.class_scores), "embeddings+spectral_shape")
    with pytest.raises(ValueError, match="inputs"):
        FrameHead(inputs="spectrogram").frame_inputs(frames)
    assert FrameHead(inputs="embeddings+spectral_shape").frame_inputs(frames).shape == (5, 72)


def test_estimator_contract(data):
    """Parameters stored as given and checked when used; learned state only after fit; sklearn's
    get_params / set_params / predict_proba / predict."""
    x, y = data
    head = FrameHead(hidden_units=8, pooling="nope", max_epochs=5, patience=5, batch_size=16)
    assert head.pooling == "nope" and not hasattr(head, "weights_") and not hasattr(head, "history_")
    with pytest.raises(ValueError, match="pooling"):
        head.fit(x, y, x[::4], y[::4])
    with pytest.raises(ModelError, match="not trained"):
        head.predict_proba(x[:2])
    assert head.set_params(pooling="max") is head and head.get_params()["pooling"] == "max"
    with pytest.raises(ValueError, match="unknown FrameHead parameters: colour"):
        head.set_params(colour="red")
    assert FrameHead(**head.get_params()).get_params() == head.get_params()
    head.fit(x, y, x[::4], y[::4])
    assert set(head.weights_) >= {"w1", "b1", "w2", "b2"} and "val_loss" in head.history_
    proba = head.predict_proba(x)
    assert proba.shape == (len(x), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(head.predict(x), (proba[:, 1] >= 0.5).astype(int))
    assert np.array_equal(head.predict(x, threshold=0.9), (proba[:, 1] >= 0.9).astype(int))


@pytest.mark.parametrize("pooling", ["max", "attention"])
def test_warm_start_starts_from_the_given_weights(data, pooling):
    x, y = data
    first = FrameHead(hidden_units=8, pooling=pooling, max_epochs=20, patience=20, batch_size=16).fit(x, y, x[::4], y[::4])
    # learning rate 0: a warm-started fit keeps the weights it started from, a cold one its random start
    params = dict(hidden_units=8, pooling=pooling, max_epochs=1, patience=1, batch_size=16, learning_rate=0.0, seed=5)
    warm = FrameHead(warm_start=True, **params)
    warm.weights_ = dict(first.weights_)
    warm.fit(x, y, x[::4], y[::4])
    cold = FrameHead(**params).fit(x, y, x[::4], y[::4])
    assert all(np.allclose(warm.weights_[k], first.weights_[k]) for k in first.weights_)
    assert not np.allclose(cold.weights_["w1"], first.weights_["w1"])
    wrong = FrameHead(warm_start=True, **{**params, "hidden_units": 4})
    wrong.weights_ = dict(first.weights_)
    with pytest.raises(ValueError, match="do not fit this head"):
        wrong.fit(x, y, x[::4], y[::4])


def test_bucketed_batches_cover_every_bag_once_and_pad_each_batch_to_its_own():
    from yamnet_capuchin.head import _bucketed

    lengths = [1] * 30 + [5] * 30 + [40, 60]
    bags = [np.full((n, 4), i, np.float32) for i, n in enumerate(lengths)]
    y = (np.arange(len(bags)) % 2).astype(np.float32)[:, None]
    w = np.ones(len(bags), np.float32)
    data = _bucketed(bags, y, w, batch_size=16, bucket_frames=8, seed=0)
    for _ in range(2):  # each epoch a new shuffle, every bag once
        seen, widths = [], []
        for (x, m), yb, wb in data:
            x, m = x.numpy(), m.numpy()
            widths.append(x.shape[1])
            ids = [int(x[i, 0, 0]) for i in range(len(x))]
            assert all(m[i].sum() == lengths[j] for i, j in enumerate(ids))
            assert np.array_equal(yb.numpy()[:, 0], y[ids, 0])
            seen += ids
        assert sorted(seen) == list(range(len(bags)))
        assert max(widths) == 60 and sum(wd <= 8 for wd in widths) == 4  # the 60 short bags are never padded to 60


def test_bucketed_fit_learns_like_padded(data):
    x, y = data
    x = list(x) + [np.full((30, 16), -1.0, np.float32)]  # one long negative bag
    y = np.append(y, 0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' "input ran out of data": every epoch must see every batch
        head = FrameHead(hidden_units=8, pooling="max", max_epochs=30, patience=30, batch_size=16,
                         bucket_frames=4).fit(x, y, x[::4], y[::4])
    assert len(head.history_["loss"]) == 30
    scores = head.predict_proba(x)[:, 1]
    assert scores[y == 1].min() > scores[y == 0].max()
    with pytest.raises(ValueError, match="bucket_frames"):
        FrameHead(bucket_frames=-1).fit(x, y, x, y)
