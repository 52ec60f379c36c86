"""The review server refuses what another web page, another host name or a tokenless client sends.

Each attack from issue #29 is replayed against the real app (Starlette TestClient, no model) and
must get a 4xx **and** leave the annotations folder byte-identical; the legitimate path (token
header, JSON, same origin) still writes the label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("jinja2", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from test_review import BASE_URL, build_run  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from yamnet_capuchin.errors import YamcapError  # noqa: E402
from yamnet_capuchin.review.app import create_app  # noqa: E402
from yamnet_capuchin.review.security import cookie_name, is_loopback, launch_token, split_host  # noqa: E402

OWN_ORIGIN = BASE_URL
EVIL = "http://evil.example"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(app, client without any token, run folder, one candidate id); one label already written so
    the annotations folder has a table whose bytes can be watched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("YAMCAP_DATA", raising=False)
    run = build_run(tmp_path)
    (tmp_path / "data").mkdir()  # a --data folder, so that retraining would be allowed
    app = create_app(run, warm_up=False, port=8765, data_dir=tmp_path / "data",
                     retrainer=lambda *a: pytest.fail("an attack started a retrain"))
    client = TestClient(app, base_url=BASE_URL)
    token = app.state.token
    ids = [c["id"] for c in client.get("/api/candidates", headers={"X-Yamcap-Token": token}).json()]
    r = client.post("/api/labels", json={"id": ids[0], "label": "unsure"}, headers={"X-Yamcap-Token": token})
    assert r.status_code == 200
    return app, client, run, ids


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def label_body(cid: str) -> bytes:
    return ('{"id": "%s", "label": "capuchin"}' % cid).encode()


def test_token_is_long_and_new_each_launch(served, tmp_path):
    app, *_ = served
    other = create_app(build_run(tmp_path / "second"), warm_up=False)
    assert len(app.state.token) >= 40 and app.state.token != other.state.token


@pytest.mark.parametrize("attack", [
    "cross-origin text/plain label, no token",
    "cross-origin text/plain label, with the cookie",
    "cross-origin JSON label, with the token",
    "same-origin text/plain label, with the token",
    "form-encoded label, with the token",
    "label without a token",
    "label with a wrong token",
    "label with a wrong cookie",
    "label through a rebound host name",
    "label through a rebound host name, with the token",
    "cross-origin label by Referer only",
])
def test_label_attacks_are_refused_and_write_nothing(served, attack):
    app, client, run, ids = served
    before = snapshot(run / "annotations")
    token, body = app.state.token, label_body(ids[1])
    cookie = {"Cookie": f"{cookie_name(8765)}={token}"}
    requests = {
        "cross-origin text/plain label, no token": ({"Content-Type": "text/plain", "Origin": EVIL}, 403),
        "cross-origin text/plain label, with the cookie": (
            {"Content-Type": "text/plain", "Origin": EVIL, **cookie}, 403),
        "cross-origin JSON label, with the token": (
            {"Content-Type": "application/json", "Origin": EVIL, "X-Yamcap-Token": token}, 403),
        "same-origin text/plain label, with the token": (
            {"Content-Type": "text/plain", "Origin": OWN_ORIGIN, "X-Yamcap-Token": token}, 415),
        "form-encoded label, with the token": (
            {"Content-Type": "application/x-www-form-urlencoded", "X-Yamcap-Token": token}, 415),
        "label without a token": ({"Content-Type": "application/json", "Origin": OWN_ORIGIN}, 403),
        "label with a wrong token": ({"Content-Type": "application/json", "X-Yamcap-Token": token[:-1] + "x"}, 403),
        "label with a wrong cookie": ({"Content-Type": "application/json", "Cookie": f"{cookie_name(8765)}=abc"}, 403),
        "label through a rebound host name": (
            {"Content-Type": "text/plain", "Host": "evil.example:8765", "Origin": "http://evil.example:8765"}, 403),
        "label through a rebound host name, with the token": (
            {"Content-Type": "application/json", "Host": "evil.example:8765", "X-Yamcap-Token": token}, 403),
        "cross-origin label by Referer only": (
            {"Content-Type": "application/json", "Referer": EVIL + "/page.html", "X-Yamcap-Token": token}, 403),
    }
    headers, status = requests[attack]
    r = client.post("/api/labels", content=body, headers=headers)
    assert r.status_code == status, (attack, r.text)
    assert snapshot(run / "annotations") == before


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL, "Content-Type": "text/plain"},
    {"Origin": EVIL, "Content-Type": "application/json", "X-Yamcap-Token": "TOKEN"},
    {"Host": "evil.example:8765", "Content-Type": "application/json", "X-Yamcap-Token": "TOKEN"},
    {"Content-Type": "application/json"},
    {"X-Yamcap-Token": "TOKEN"},  # no JSON content type
])
def test_retrain_and_picks_from_a_foreign_page_do_not_start(served, headers):
    app, client, run, _ = served
    before = snapshot(run / "annotations")
    headers = {k: v.replace("TOKEN", app.state.token) for k, v in headers.items()}
    for path in ("/api/retrain", "/api/extra"):
        r = client.post(path, content=b"{}", headers=headers)
        assert 400 <= r.status_code < 500, (path, headers, r.status_code)
    state = app.state.review
    assert state.retrain_job.state == "idle" and state.extra_job.state == "idle"
    assert snapshot(run / "annotations") == before


@pytest.mark.parametrize("path", ["/", "/api/candidates", "/api/stats", "/api/retrain", "/api/image/ID.png",
                                  "/api/audio/ID.wav", "/static/review.js"])
def test_rebound_host_reads_nothing(served, path):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: even with the token, nothing is served."""
    app, client, _, ids = served
    path = path.replace("ID", ids[0])
    r = client.get(path, headers={"Host": "evil.example:8765", "X-Yamcap-Token": app.state.token})
    assert r.status_code == 403
    assert ids[0] not in r.text and "review.js" not in r.text


@pytest.mark.parametrize("path", ["/", "/api/candidates", "/api/stats", "/api/image/ID.png", "/api/audio/ID.wav"])
def test_reads_need_the_token(served, path):
    app, client, _, ids = served
    path = path.replace("ID", ids[0])
    assert client.get(path).status_code == 403
    assert client.get(path, headers={"X-Yamcap-Token": "wrong"}).status_code == 403
    assert client.get(path, headers={"X-Yamcap-Token": app.state.token}).status_code == 200


def test_allowed_hosts(served):
    app, client, _, _ = served
    h = {"X-Yamcap-Token": app.state.token}
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert client.get("/api/stats", headers={**h, "Host": host}).status_code == 200, host
    for host in ("127.0.0.1:9999", "evil.example", "127.0.0.1.evil.example:8765", "", "127.0.0.1:x"):
        assert client.get("/api/stats", headers={**h, "Host": host}).status_code == 403, host


def test_page_url_sets_a_strict_httponly_cookie_and_embeds_the_token(served):
    app, client, _, _ = served
    token = app.state.token
    r = client.get(f"/?token={token}")
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(8765)}={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert f'<meta name="yamcap-token" content="{token}">' in r.text
    # the cookie alone now opens the API (the page's images and audio rely on it)
    fresh = TestClient(app, base_url=BASE_URL)
    assert fresh.get("/api/candidates", headers={"Cookie": f"{cookie_name(8765)}={token}"}).status_code == 200
    assert TestClient(app, base_url=BASE_URL).get("/?token=wrong").status_code == 403


def test_security_headers_on_every_answer(served):
    app, client, _, ids = served
    h = {"X-Yamcap-Token": app.state.token}
    for path in ("/", "/api/candidates", f"/api/image/{ids[0]}.png", "/static/review.js", "/api/nothing"):
        r = client.get(path, headers=h)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert "script-src 'self'" in r.headers["content-security-policy"], path
    refused = client.get("/api/candidates")
    assert refused.status_code == 403 and refused.headers["x-frame-options"] == "DENY"


def test_same_origin_json_with_the_token_writes_the_label(served):
    app, client, run, ids = served
    r = client.post("/api/labels", content=label_body(ids[1]),
                    headers={"Content-Type": "application/json; charset=utf-8", "Origin": OWN_ORIGIN,
                             "X-Yamcap-Token": app.state.token})
    assert r.status_code == 200
    tables = list((run / "annotations").glob("*.txt"))
    assert any("capuchin" in t.read_text() for t in tables)


def test_no_token_mode_still_refuses_foreign_hosts_and_origins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = build_run(tmp_path)
    app = create_app(run, warm_up=False, token=None, port=8765)
    client = TestClient(app, base_url=BASE_URL)
    ids = [c["id"] for c in client.get("/api/candidates").json()]
    assert client.post("/api/labels", json={"id": ids[0], "label": "capuchin"}).status_code == 200
    assert client.post("/api/labels", content=label_body(ids[1]),
                       headers={"Content-Type": "text/plain", "Origin": EVIL}).status_code == 403
    assert client.get("/api/candidates", headers={"Host": "evil.example:8765"}).status_code == 403


def test_launch_token_rules():
    token, warns = launch_token(None, False, "127.0.0.1")
    assert len(token) >= 40 and warns == []
    assert launch_token("a-token-of-my-own-choosing", False, "localhost")[0] == "a-token-of-my-own-choosing"
    none, warns = launch_token("", True, "127.0.0.1")
    assert none is None and len(warns) == 1 and "no token check" in warns[0]
    with pytest.raises(YamcapError, match="--no-token"):
        launch_token("", False, "127.0.0.1")
    with pytest.raises(YamcapError, match="loopback"):
        launch_token(None, True, "0.0.0.0")
    with pytest.raises(YamcapError, match="16 characters"):
        launch_token("short", False, "127.0.0.1")
    token, warns = launch_token(None, False, "0.0.0.0")
    assert token and len(warns) == 1 and "not a loopback address" in warns[0]
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("::") and not is_loopback("10.0.0.5")
    assert split_host("[::1]:8765") == ("::1", 8765) and split_host("LocalHost") == ("localhost", None)


def test_cli_prints_the_url_with_the_token(tmp_path, monkeypatch):
    import uvicorn

    from yamnet_capuchin.cli import app as cli

    monkeypatch.chdir(tmp_path)
    run = build_run(tmp_path)
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, host, port, **kw: served.update(web=web, host=host, port=port))
    result = CliRunner().invoke(cli, ["review", str(run), "--no-browser", "--port", "8799"])
    assert result.exit_code == 0, result.output
    token = served["web"].state.token
    assert f"http://127.0.0.1:8799/?token={token}" in result.output
    result = CliRunner().invoke(cli, ["review", str(run), "--no-browser", "--host", "0.0.0.0", "--no-token"])
    assert result.exit_code == 2 and "loopback" in result.output
    result = CliRunner().invoke(cli, ["review", str(run), "--no-browser", "--token", ""])
    assert result.exit_code == 2 and "--no-token" in result.output
