"""``yamcap review``: look at a count run's detections in the browser, label them, retrain.

Needs the ``review`` extra (starlette, uvicorn, jinja2): ``pip install -e ".[review]"``.

* :mod:`.candidates` - pure logic: events -> candidates, labels, statistics, extra picks;
* :mod:`.media` - audio spans and spectrogram images, made on request and cached;
* :mod:`.retrain` - the adapter over ``yamnet_capuchin.train.train_yamnet``;
* :mod:`.app` - the Starlette app, ``create_app(run_dir, annotations_dir, ...)``.
"""

REVIEW_EXTRA_HINT = 'pip install -e ".[review]"'


def missing_dependencies() -> list[str]:
    """The review extra's packages that cannot be imported."""
    import importlib.util

    return [m for m in ("starlette", "uvicorn", "jinja2") if importlib.util.find_spec(m) is None]


def create_app(*args, **kwargs):
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["REVIEW_EXTRA_HINT", "create_app", "missing_dependencies"]
