"""``yamcap review``: the labelling page."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import _fail, _guarded, app


@app.command()
@_guarded
def review(
    run_dir: Path = typer.Argument(..., help="A `yamcap count` output folder (events.csv, summary.json)."),
    audio: Optional[List[Path]] = typer.Argument(None, help="The recordings (files or folders), if events.csv's paths do not lead to them from here."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="Folder for the Raven tables of labels [default: RUN_DIR/annotations]."),
    port: int = typer.Option(8765, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", rich_help_panel="Security", help="Address to bind (only this machine by default). Any other address prints a warning and needs the token."),
    token: Optional[str] = typer.Option(None, "--token", rich_help_panel="Security", help="The secret in the page's address [default: a new random one each launch]. Every API request needs it."),
    no_token: bool = typer.Option(False, "--no-token", rich_help_panel="Security", help="No token check (loopback only, with a warning): any local program can then label. Foreign hosts and origins are still refused."),
    allow_host: Optional[List[str]] = typer.Option(None, "--allow-host", rich_help_panel="Security", help="Another host name the page may be opened by, besides 127.0.0.1, localhost, [::1] and --host (repeatable)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Kaggle-layout training data for Retrain [env: YAMCAP_DATA]."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model for active-learning picks (default: the shipped one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
):
    """Review a count run's detections in the browser: listen, look, label, retrain.

    Serves a local page with each event's spectrogram (0-4 kHz, 2 s context) and audio. Keys:
    1 call, 2 not a call (with a kind, e.g. other:insect), 3 unsure, left/right arrows to move.
    Every label is written at once to a Raven table per recording (<stem>.Table.1.selections.txt,
    Annotation column) in RUN_DIR/annotations/; a reload resumes where you stopped. Needs the
    review extra: pip install -e ".[review]". See docs/review.md.

    The printed address carries a per-launch token; requests without it, from another host name
    or from another site's page are refused (docs/review.md, Security).

    Examples:

        yamcap review counts/

        yamcap review counts/ "Forest Recordings/" --annotations data/annotations/review --data ../shared/data/capuchin
    """
    from ..review import REVIEW_EXTRA_HINT, missing_dependencies

    if missing_dependencies():
        _fail(f"yamcap review needs the 'review' extra ({', '.join(missing_dependencies())} missing): "
              f"{REVIEW_EXTRA_HINT}")
    import threading
    import webbrowser

    import uvicorn

    from ..review.app import create_app
    from ..review.security import launch_token

    secret, warnings = launch_token(token, no_token, host)
    for line in warnings:
        typer.secho(f"warning: {line}", fg="yellow", err=True)
    web = create_app(run_dir, annotations, audio or [], data, model_dir=model, token=secret, host=host, port=port,
                     extra_hosts=allow_host or ())
    state = web.state.review
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    url = f"http://{shown}:{port}/" + (f"?token={secret}" if secret else "")
    typer.echo(f"{len(state.by_id)} candidates from {len(state.recordings)} recordings; labels go to "
               f"{state.annotations_dir}/\nreview at {url}  (Ctrl-C to stop)")
    if not no_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(web, host=host, port=port, log_level="warning")
