"""Frozen embedding backbones behind one contract (:class:`Backbone`, :class:`Frames`).

* :mod:`.base` - the contract, frame times, the compatibility policy between a model's
  recorded backbone and the one in use;
* :mod:`.runtime` - TensorFlow start-up (quiet import, thread pools, silenced native logs);
* :mod:`.yamnet` - YAMNet, SavedModel or TFLite: the backbone the package ships with.

A second backbone is one more module here that meets :class:`Backbone`.
"""

from .base import Backbone, Frames, check_compatible, frame_times
from .runtime import configure_tensorflow, default_threads, import_tensorflow, quiet_native_stderr
from .yamnet import (ENV_YAMNET, TFLITE_EMBEDDING_TENSOR, YAMNET_CLASSES, YAMNET_EMBEDDING_DIM, YAMNET_HOP,
                     YAMNET_MEL_BANDS, YAMNET_PATCH_ROWS, YAMNET_WINDOW, YamnetBackbone, patch_means, public_handle,
                     resolve_yamnet_handle, tflite_kernels, yamnet_frame_count)

__all__ = [
    "Backbone", "Frames", "check_compatible", "frame_times",
    "configure_tensorflow", "default_threads", "import_tensorflow", "quiet_native_stderr",
    "ENV_YAMNET", "TFLITE_EMBEDDING_TENSOR", "YAMNET_CLASSES", "YAMNET_EMBEDDING_DIM", "YAMNET_HOP",
    "YAMNET_MEL_BANDS", "YAMNET_PATCH_ROWS", "YAMNET_WINDOW", "YamnetBackbone", "patch_means", "public_handle",
    "resolve_yamnet_handle", "tflite_kernels", "yamnet_frame_count",
]
