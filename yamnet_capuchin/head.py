"""A small trainable head on frozen frame embeddings, as a scikit-learn-style estimator.

The constructor only stores parameters (checked by :meth:`FrameHead.fit` and
:meth:`FrameHead.load`); ``fit`` sets the learned ``weights_`` and ``history_``;
``predict_proba`` gives clip scores, ``predict`` 0/1 labels. Its inputs are lists of
variable-length bags, so it is not a drop-in scikit-learn estimator (no ``X`` matrix).

Per frame: Dense(hidden, ReLU) -> Dropout -> Dense(1, sigmoid) gives a frame score in [0, 1]
(``hidden_units`` = 0: Dropout -> Dense(1, sigmoid) on the inputs, i.e. a linear probe).
With ``context`` = c > 0 each frame's input is its embedding followed by the mean embedding of
its c neighbours on either side (edges repeat the end frames): a Capuchinbird call lasts 2–3 s,
longer than one 0.96 s frame, and its growl-then-stack shape spans neighbouring frames.
With ``inputs`` = ``"embeddings+spectral_shape"`` each frame's input also holds its spectral
shape: the frame's mean log-mel energy per band (YAMNet's own front end) less its mean over
bands, so gain drops out and only where in frequency the energy lies remains. The embedding,
averaged over YAMNet's coarse final feature map, keeps little of that; a Capuchinbird's growl
and the coos and harmonic stacks it is confused with differ in it. (Off by default: it helps clip
classification in CV but counts worse on the validation soundscapes; docs/experiments.md, "Head settings".)
Per clip: frame scores are pooled (``mean``, ``max`` or ``attention``) into a clip score; the
head is trained with clip labels on that pooled score (binary cross-entropy, classes
weighted by inverse frequency, early stopping on validation loss).

Keras is used only to fit; inference runs in NumPy on the learned weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError
from .fileio import atomic_path

POOLINGS = ("mean", "max", "attention")
HEAD_INPUTS = ("embeddings", "embeddings+spectral_shape")
# the shape's values spread ~1.8 (sd), the embeddings' ~0.3; of scales 0.25, 0.5 and 1, 0.25
# gave the best clip F1 in source-grouped CV on train + validation (docs/experiments.md, "Head settings")
SPECTRAL_SHAPE_SCALE = 0.25


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def with_context(embeddings: np.ndarray, context: int) -> np.ndarray:
    """(F, D) embeddings -> (F, 2D): each frame, then the mean of frames t-c..t+c other than t
    (indices clamped to the clip, i.e. the end frames repeat). ``context`` = 0: unchanged."""
    if context <= 0:
        return embeddings
    n = embeddings.shape[0]
    idx = np.arange(n)
    neighbours = np.zeros_like(embeddings, dtype=np.float32)
    for offset in [o for o in range(-context, context + 1) if o != 0]:
        neighbours += embeddings[np.clip(idx + offset, 0, n - 1)]
    return np.concatenate([embeddings, neighbours / (2 * context)], axis=1).astype(np.float32)


def head_inputs(frames, inputs: str = "embeddings", shape_scale: float = SPECTRAL_SHAPE_SCALE) -> np.ndarray:
    """A head's (F, D) per-frame input from :class:`~yamnet_capuchin.backbones.Frames`:
    the (F, 1024) embeddings, or (``"embeddings+spectral_shape"``) those followed by the
    (F, 64) spectral shape (``mel_profile`` less its mean over bands, times ``shape_scale``)."""
    if inputs == "embeddings":
        return frames.embeddings
    if inputs != "embeddings+spectral_shape":
        raise ValueError(f"inputs must be one of {HEAD_INPUTS}, got '{inputs}'")
    profile = frames.mel_profile
    if profile.shape[1] == 0:
        raise ModelError("this head needs the log-mel spectrogram of each frame, which the backbone "
                         "did not return (YAMNet SavedModel or TFLite give it)")
    shape = profile - profile.mean(axis=1, keepdims=True)
    return np.concatenate([frames.embeddings, shape_scale * shape], axis=1).astype(np.float32)


def pad_bags(bags: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length (F_i, D) arrays into (N, F_max, D) plus a (N, F_max) 0/1 mask."""
    n, dim = len(bags), bags[0].shape[1]
    longest = max(b.shape[0] for b in bags)
    x = np.zeros((n, longest, dim), np.float32)
    mask = np.zeros((n, longest), np.float32)
    for i, bag in enumerate(bags):
        x[i, : bag.shape[0]] = bag
        mask[i, : bag.shape[0]] = 1.0
    return x, mask


def _bucketed(bags: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray, batch_size: int, bucket_frames: int,
              seed: int):
    """A ``tf.data.Dataset`` of ``((x, mask), y, w)`` batches for :meth:`FrameHead.fit`: bags of
    at most ``bucket_frames`` frames, and the longer ones, in batches of their own (a new seeded
    shuffle each epoch), each padded to its longest bag."""
    import tensorflow as tf

    lengths = np.array([b.shape[0] for b in bags])
    parts = [np.flatnonzero(lengths <= bucket_frames), np.flatnonzero(lengths > bucket_frames)]
    rng = np.random.default_rng(seed)

    def epoch():
        batches = []
        for part in parts:
            part = rng.permutation(part)
            batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
        for k in rng.permutation(len(batches)):
            idx = batches[k]
            yield pad_bags([bags[j] for j in idx]), y[idx], w[idx]

    dim = bags[0].shape[1]
    signature = ((tf.TensorSpec((None, None, dim), tf.float32), tf.TensorSpec((None, None), tf.float32)),
                 tf.TensorSpec((None, 1), tf.float32), tf.TensorSpec((None,), tf.float32))
    n_batches = sum(-(-len(part) // batch_size) for part in parts)  # the same every epoch: Keras knows its steps
    data = tf.data.Dataset.from_generator(epoch, output_signature=signature)
    return data.apply(tf.data.experimental.assert_cardinality(n_batches))


def _starts_like_zip(path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


class FrameHead:
    """Frame classifier + pooling on embeddings of shape (F, D).

    Parameters are stored by the constructor as given and checked when used (:meth:`fit`,
    :meth:`load`); learned state (``weights_``: the layers' arrays, ``history_``: Keras' loss
    curves) exists only after :meth:`fit` or :meth:`load`.
    """

    def __init__(
        self,
        hidden_units: int = 512,
        dropout: float = 0.3,
        pooling: str = "mean",
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        max_epochs: int = 200,
        patience: int = 15,
        balance_classes: bool = True,
        context: int = 0,
        inputs: str = "embeddings",
        seed: int = 0,
        warm_start: bool = False,
        bucket_frames: int = 0,
    ):
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.pooling = pooling
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.balance_classes = balance_classes
        self.context = context
        self.inputs = inputs
        self.seed = seed
        self.warm_start = warm_start
        self.bucket_frames = bucket_frames

    def _validate_params(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got '{self.pooling}'")
        if self.inputs not in HEAD_INPUTS:
            raise ValueError(f"inputs must be one of {HEAD_INPUTS}, got '{self.inputs}'")
        if int(self.context) != self.context or self.context < 0:
            raise ValueError(f"context must be a whole number >= 0, got {self.context!r}")
        if int(self.bucket_frames) != self.bucket_frames or self.bucket_frames < 0:
            raise ValueError(f"bucket_frames must be a whole number >= 0, got {self.bucket_frames!r}")

    def frame_inputs(self, frames) -> np.ndarray:
        """What this head reads per frame: (F, D) from :class:`~yamnet_capuchin.backbones.Frames`
        (:func:`head_inputs` with this head's ``inputs``). Every method below takes such arrays."""
        if self.inputs not in HEAD_INPUTS:
            raise ValueError(f"inputs must be one of {HEAD_INPUTS}, got '{self.inputs}'")
        return head_inputs(frames, self.inputs)

    # -- training -----------------------------------------------------------------------
    def fit(self, bags, labels, val_bags, val_labels, sample_weight=None) -> "FrameHead":
        """Train on clips given as lists of (F_i, D) frame inputs (:meth:`frame_inputs`) with 0/1
        labels; ``sample_weight`` (N,): per-clip weights, multiplied into the class weights.

        With ``warm_start`` (as in scikit-learn) a head that already has ``weights_`` (from
        :meth:`load` or an earlier fit) starts from them instead of a random initialisation.

        ``bucket_frames`` = b > 0: bags of at most b frames and the longer ones are batched apart,
        each batch padded to its own longest bag; 0: every batch is padded to the longest bag of
        all. The loss is the same (only the batches are drawn differently); b > 0 is faster where a few long bags (a 30 s ``other:*``
        selection is one 60-frame bag) would pad thousands of 1-5-frame ones (a review retrain:
        pad_bags and copying the padded array were ~40 % of its fit)."""
        self._validate_params()
        from .backbones import import_tensorflow

        import_tensorflow()
        import keras

        import tensorflow as tf

        keras.utils.set_random_seed(self.seed)
        tf.config.experimental.enable_op_determinism()  # same seed, same head
        bags = [with_context(b, self.context) for b in bags]
        vx, vm = pad_bags([with_context(b, self.context) for b in val_bags])
        net = self._build(bags[0].shape[1])
        if self.warm_start and getattr(self, "weights_", None) is not None:
            self._start_from(net, self.weights_)
        y = np.asarray(labels, np.float32)[:, None]
        vy = np.asarray(val_labels, np.float32)[:, None]
        weights = np.ones(len(y), np.float32)
        if self.balance_classes and 0 < y.sum() < len(y):
            pos = float(y.sum())
            weights = np.where(y[:, 0] == 1, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos))).astype(np.float32)
        if sample_weight is not None:
            weights = weights * np.asarray(sample_weight, np.float32)
        net.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="binary_crossentropy")
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience, restore_best_weights=True)
        if self.bucket_frames:
            data = _bucketed(bags, y, weights, self.batch_size, self.bucket_frames, self.seed)
            hist = net.fit(data, validation_data=([vx, vm], vy), epochs=self.max_epochs, callbacks=[stop], verbose=0,
                           shuffle=False)  # the dataset shuffles itself
        else:
            x, m = pad_bags(bags)
            hist = net.fit(
                [x, m], y, sample_weight=weights, validation_data=([vx, vm], vy),
                batch_size=self.batch_size, epochs=self.max_epochs, callbacks=[stop], verbose=0, shuffle=True,
            )
        self.history_ = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        self.weights_ = {}  # in this order, so that a retrained head.npz is the same file byte for byte
        if net.hidden is not None:
            self.weights_.update(w1=net.hidden.kernel.numpy(), b1=net.hidden.bias.numpy())
        self.weights_.update(w2=net.out.kernel.numpy()[:, 0], b2=net.out.bias.numpy())
        if net.att is not None:
            self.weights_["wa"] = net.att.kernel.numpy()[:, 0]
            self.weights_["ba"] = net.att.bias.numpy()
        return self

    def _build(self, dim: int):
        import keras
        from keras import layers, ops

        import tensorflow as tf

        pooling = self.pooling

        class HeadNet(keras.Model):
            def __init__(self, hidden, dropout):
                super().__init__()
                self.hidden = layers.Dense(hidden, activation="relu") if hidden > 0 else None
                self.drop = layers.Dropout(dropout)
                self.out = layers.Dense(1)
                self.att = layers.Dense(1) if pooling == "attention" else None

            def call(self, inputs, training=False):
                x, mask = inputs
                h = x if self.hidden is None else self._hidden_on_real_frames(x, mask)
                h = self.drop(h, training=training)
                p = ops.sigmoid(ops.squeeze(self.out(h), -1))
                if pooling == "mean":
                    clip = ops.sum(p * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
                elif pooling == "max":
                    clip = ops.max(p * mask, axis=1)
                else:
                    a = ops.squeeze(self.att(h), -1)
                    a = ops.where(mask > 0, a, -1e9)
                    clip = ops.sum(ops.softmax(a, axis=1) * p, axis=1)
                return ops.expand_dims(clip, -1)

            def _hidden_on_real_frames(self, x, mask):
                # the big layer runs on real frames only: padding to the longest clip is ~40 % of
                # the frames (training: 11.1 -> 7.9 s); padded rows get h = 0 and are masked later
                real = tf.where(mask > 0)
                h_real = self.hidden(tf.gather_nd(x, real))
                batch_frames = tf.shape(x, out_type=tf.int64)[:2]
                return tf.scatter_nd(real, h_real, tf.concat([batch_frames, [self.hidden.units]], 0))

        net = HeadNet(self.hidden_units, self.dropout)
        net([np.zeros((1, 2, dim), np.float32), np.ones((1, 2), np.float32)])
        return net

    @staticmethod
    def _start_from(net, w: dict) -> None:
        pairs = [(net.out.kernel, w["w2"][:, None]), (net.out.bias, w["b2"])]
        if net.hidden is not None:
            pairs += [(net.hidden.kernel, w.get("w1")), (net.hidden.bias, w.get("b1"))]
        if net.att is not None:
            pairs += [(net.att.kernel, w.get("wa", np.zeros(0))[:, None]), (net.att.bias, w.get("ba"))]
        for var, value in pairs:
            if value is None or tuple(var.shape) != tuple(np.shape(value)):
                raise ValueError(f"warm_start: the head's weights do not fit this head ({var.path} is "
                                 f"{tuple(var.shape)}, the stored array {None if value is None else np.shape(value)})")
            var.assign(np.asarray(value, np.float32))

    # -- inference ----------------------------------------------------------------------
    def _check_fitted(self) -> dict[str, np.ndarray]:
        weights = getattr(self, "weights_", None)
        if weights is None:
            raise ModelError("head is not trained: call fit() or load() first")
        return weights

    def _forward(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations (F, H) and frame scores (F,) of (F, D) embeddings."""
        w = self._check_fitted()
        h = with_context(embeddings, self.context)
        if "w1" in w:
            h = np.maximum(h @ w["w1"] + w["b1"], 0.0)
        return h, _sigmoid(h @ w["w2"] + w["b2"])

    def frame_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(F, D) embeddings -> (F,) frame scores in [0, 1]."""
        return self._forward(embeddings)[1].astype(np.float32)

    def clip_score(self, embeddings: np.ndarray) -> float:
        """(F, D) embeddings of one clip -> pooled clip score in [0, 1]."""
        w = self._check_fitted()
        h, p = self._forward(embeddings)
        if self.pooling == "mean":
            return float(p.mean())
        if self.pooling == "max":
            return float(p.max())
        a = h @ w["wa"] + w["ba"]
        a = np.exp(a - a.max())
        return float(np.sum(a / a.sum() * p))

    def predict_proba(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities of a list of (F_i, D) arrays, shape (N, 2): column 0 no call,
        column 1 a call (the pooled clip score)."""
        p = np.array([self.clip_score(b) for b in bags], dtype=np.float32).reshape(-1)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, bags: Sequence[np.ndarray], threshold: float = 0.5) -> np.ndarray:
        """0/1 labels, shape (N,): a call where the clip score is at least ``threshold``."""
        return (self.predict_proba(bags)[:, 1] >= threshold).astype(np.int64)

    # -- parameters and persistence -------------------------------------------------------
    PARAMS = ("hidden_units", "dropout", "pooling", "learning_rate", "batch_size",
              "max_epochs", "patience", "balance_classes", "context", "inputs", "seed", "warm_start",
              "bucket_frames")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters (``deep`` is accepted for scikit-learn; nothing nests)."""
        return {k: getattr(self, k) for k in self.PARAMS}

    def set_params(self, **params) -> "FrameHead":
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(f"unknown FrameHead parameters: {', '.join(unknown)}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def save(self, path: str | Path) -> None:
        """Weights to one ``.npz`` (written atomically)."""
        w = self._check_fitted()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **w)

    @classmethod
    def load(cls, path: str | Path, **params) -> "FrameHead":
        head = cls(**params)
        head._validate_params()
        try:
            with np.load(path, allow_pickle=False) as data:
                head.weights_ = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise ModelError(f"{path}: head weights missing (the model directory is incomplete)") from None
        except Exception as exc:  # BadZipFile, "Bad CRC-32", EOFError, ValueError, zlib.error, ...
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if not _starts_like_zip(path):
                reason = "not an .npz archive"
            raise ModelError(f"{path}: cannot read head weights, the file is damaged ({reason}); "
                             "copy or train the model again") from None
        if not isinstance(head.weights_, dict) or not all(isinstance(v, np.ndarray) for v in head.weights_.values()):
            raise ModelError(f"{path}: not a head weights file")
        missing = ({"w1", "b1"} if head.hidden_units > 0 else set()) | {"w2", "b2"}
        missing -= set(head.weights_)
        if missing or (head.pooling == "attention" and "wa" not in head.weights_):
            raise ModelError(f"{path}: head weights incomplete (missing {sorted(missing) or ['wa']})")
        return head
