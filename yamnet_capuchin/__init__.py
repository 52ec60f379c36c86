"""yamnet-capuchin: find and count Capuchinbird calls with a frozen YAMNet and a small head.

Data flows one way, one module per stage::

    audio (decode, resample to 16 kHz)  ->  backbones (frames, embeddings)
    ->  head / cnn (frame scores)  ->  events (calls)  ->  counting / reports

Heavy dependencies (TensorFlow) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"

from .errors import AudioError, ModelError, YamcapError  # noqa: E402

__all__ = ["__version__", "AudioError", "ModelError", "YamcapError"]
