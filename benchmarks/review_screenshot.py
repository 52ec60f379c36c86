"""Start-up time of `yamcap review` and a screenshot of the page (docs/review.png).

Starts ``yamcap review RUN_DIR --no-browser`` as a subprocess and measures, from the moment the
process is started: the first ``/api/candidates`` answer, the page showing its first candidate
in headless Chromium (launched beforehand, so its own start is not counted) and that
candidate's spectrogram loaded. Then labels a few candidates through the API, reloads the
page and saves a screenshot.

    yamcap count "../shared/data/capuchin/Forest Recordings" --out /tmp/review_run -q
    python benchmarks/review_screenshot.py /tmp/review_run --out docs/review.png

Labels go to a temporary annotations folder unless --annotations is given. The labels given
before the screenshot are those of the hand-made tables in --truth (data/annotations/forest):
each candidate gets the label of the annotated selection it overlaps most ('unsure' if none).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1050", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, token: str, data: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"Content-Type": "application/json", "X-Yamcap-Token": token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/review.png"))
    ap.add_argument("--annotations", type=Path, default=None)
    ap.add_argument("--labels", type=int, default=8, help="candidates to label before the screenshot")
    ap.add_argument("--truth", type=Path, default=Path("data/annotations/forest"), help="hand-made tables to label from")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    ann_dir = args.annotations or Path(tempfile.mkdtemp(prefix="yamcap-review-ann-"))
    profile = tempfile.mkdtemp(prefix="yamcap-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    yamcap = shutil.which("yamcap") or str(Path(sys.executable).parent / "yamcap")
    t0 = time.perf_counter()
    token = secrets.token_urlsafe(32)  # the launch token, chosen here so the script can use the API
    server = subprocess.Popen([yamcap, "review", str(args.run_dir), "--no-browser", "--port", str(port),
                               "--annotations", str(ann_dir), "--token", token], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def js(expr):
        return drv.execute_script(f"return {expr};")

    def wait(expr, timeout=30):
        WebDriverWait(drv, timeout, poll_frequency=0.02).until(lambda d: js(expr))

    try:
        while True:
            try:
                cands = get_json(url + "/api/candidates", token)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(server.stdout.read().decode())
                time.sleep(0.02)
        t_json = time.perf_counter() - t0
        drv.get(url + f"/?token={token}")
        wait("document.getElementById('c-file').textContent !== '-'")
        t_page = time.perf_counter() - t0
        wait("document.getElementById('c-image').complete && document.getElementById('c-image').naturalWidth > 0")
        t_image = time.perf_counter() - t0
        timing = {"candidates": len(cands), "recordings": len({c["file"] for c in cands}),
                  "first_candidates_json_s": round(t_json, 2), "first_candidate_shown_s": round(t_page, 2),
                  "first_spectrogram_loaded_s": round(t_image, 2)}
        print(json.dumps(timing, indent=2))

        from yamnet_capuchin.annotations import label_at, read_folder

        truth = read_folder(args.truth)
        for c in cands[: args.labels]:
            get_json(url + "/api/labels", token, {"id": c["id"], "label": label_at(truth.get(Path(c["file"]).stem, []),
                                                                                c["start_s"], c["end_s"])})
        drv.refresh()
        wait("document.getElementById('c-file').textContent !== '-'")
        wait("document.getElementById('c-image').complete && document.getElementById('c-image').naturalWidth > 0")
        wait("document.getElementById('precision').innerHTML.includes('<svg')")
        drv.execute_script("document.querySelector('details').open = true;")
        time.sleep(0.3)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        drv.quit()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
        if args.annotations is None:
            shutil.rmtree(ann_dir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
