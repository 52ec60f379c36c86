"""Fingerprints: short hashes that say which weights a score came from (resume, caches, exports)."""

from __future__ import annotations

import hashlib
import json

import numpy as np


def weights_fingerprint(kind: str, threshold: float, weights: dict, backbone: dict | None = None) -> str:
    """sha256 (16 hex digits) over kind, threshold, backbone identity and the named weight arrays."""
    digest = hashlib.sha256(json.dumps([kind, threshold, backbone or {}], sort_keys=True).encode())
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()[:16]
