"""TensorFlow start-up for the backbones: quiet imports, thread pools, silenced native logs, the
TFLite interpreter."""

from __future__ import annotations

import contextlib
import os
import sys


def default_threads(spare: int = 0) -> int:
    """CPU threads for inference: ``$YAMCAP_THREADS``, else all cores but ``spare`` (at least 1)."""
    env = os.environ.get("YAMCAP_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else max(1, (os.cpu_count() or 1) - spare)


def import_tensorflow():
    """Import TensorFlow without its start-up noise on stderr (CUDA probing on CPU machines)."""
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    _set_threads(tf, default_threads())
    return tf


def tflite_interpreter():
    """The TFLite ``Interpreter`` class: LiteRT's (``ai_edge_litert``, imported in about 0.1 s)
    where it is installed, else TensorFlow's ``tf.lite.Interpreter`` (importing TensorFlow takes
    3-5 s). Both run the same kernels and XNNPACK delegate."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return import_tensorflow().lite.Interpreter
    return Interpreter


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to file descriptor 2 while the block runs (the TFLite
    runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++, past
    Python's logging and TF_CPP_MIN_LOG_LEVEL). Python-level errors still raise as usual;
    ``YAMCAP_DEBUG=1`` leaves stderr alone."""
    if os.environ.get("YAMCAP_DEBUG"):
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no fd 2 to redirect
        yield
        return
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _set_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # the runtime is already initialised: keep what is set
        pass


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's start-up logging and size its thread pools to the machine."""
    tf = import_tensorflow()
    _set_threads(tf, threads or default_threads())
