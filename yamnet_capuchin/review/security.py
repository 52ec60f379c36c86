"""What keeps other web pages and other local users out of the review server.

A server on 127.0.0.1 is reachable by every page the user's browser opens, so, as Jupyter does,
every request passes :class:`Guard` (an ASGI middleware) before it reaches the app:

* **Host allow-list** (DNS rebinding): the ``Host`` header must name a loopback address
  (``127.0.0.1``, ``localhost``, ``[::1]``), the bound host or one of ``extra_hosts``; the port,
  where known, must be the server's. Anything else: 403, whatever the path.
* **Token**: a per-launch secret (:func:`new_token`). ``/?token=T`` sets it as an HttpOnly,
  SameSite=Strict cookie (named after the port: cookies are shared by all ports of a host); the
  page sends it in the ``X-Yamcap-Token`` header and takes it out of the address bar. ``/`` and every ``/api/*`` request without a valid
  token (header or cookie) gets 403. ``token=None`` turns this check off (the CLI allows that
  only on loopback, with a warning).
* **Origin** on state-changing requests (POST, PUT, PATCH, DELETE): a present ``Origin`` (or,
  without one, ``Referer``) must be the server's own origin (403), and the body must be declared
  ``application/json`` (415), so a cross-origin page can never send a "simple" request.
* **Headers** on every answer: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin`` and a Content-Security-Policy that allows only the server's
  own scripts, styles and media and no framing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

TOKEN_HEADER = "x-yamcap-token"
TOKEN_QUERY = "token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CSP.encode()),
)


def new_token() -> str:
    """A fresh secret for one launch: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server to this machine (``0.0.0.0`` and ``::`` do not)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``'127.0.0.1:8765'`` -> ``('127.0.0.1', 8765)``; ``'[::1]:80'`` -> ``('::1', 80)``;
    no port -> ``None``. Host names are lower-cased; a malformed port gives ``(value, -1)``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if not port:
        return host, None
    return (host, int(port)) if port.isdigit() else (value, -1)


def cookie_name(port: int | None) -> str:
    """Cookies are shared by every port of a host, so each server's cookie carries its port."""
    return f"yamcap-token-{port}" if port else "yamcap-token"


class Guard:
    """ASGI middleware: the Host, token and Origin checks of the module docstring around ``app``.

    ``token``: the secret (None: no token check); ``bind_host``: the address the server is bound
    to (allowed as a Host besides the loopback names); ``port``: the server's port (None: any
    port of an allowed host); ``extra_hosts``: further host names to allow (e.g. the machine's
    name when it is served to the network)."""

    def __init__(self, app, token: str | None, bind_host: str = "127.0.0.1", port: int | None = None,
                 extra_hosts: Iterable[str] = ()):
        self.app, self.token, self.port = app, token, port
        self.hosts = {h.strip().lower().strip("[]") for h in (*LOOPBACK_HOSTS, bind_host, *extra_hosts) if h}

    # --- the checks, each returning an error (status, message) or None ---------------------------
    def check_host(self, host_header: str) -> tuple[int, str] | None:
        host, port = split_host(host_header)
        if host not in self.hosts or port == -1 or (self.port is not None and port not in (self.port, None)):
            return 403, f"host '{host_header}' is not allowed (open the address yamcap review printed)"
        return None

    def token_ok(self, headers: dict[str, str], query: dict[str, list[str]], port: int | None) -> bool:
        if self.token is None:
            return True
        given = [headers.get(TOKEN_HEADER, "")] + query.get(TOKEN_QUERY, [])
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            pass
        if cookie_name(port) in cookies:
            given.append(cookies[cookie_name(port)].value)
        return any(g and hmac.compare_digest(g.encode(), self.token.encode()) for g in given)

    @staticmethod
    def check_origin(method: str, headers: dict[str, str], own_origin: str) -> tuple[int, str] | None:
        if method not in STATE_CHANGING:
            return None
        origin = headers.get("origin")
        if origin is None and headers.get("referer"):
            parts = urlsplit(headers["referer"])
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin is not None and origin.lower() != own_origin.lower():
            return 403, f"cross-origin request from '{origin}' refused"
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 415, "state-changing requests must be sent as application/json"
        return None

    # --- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        path, method = scope.get("path", "/"), scope.get("method", "GET").upper()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        port = split_host(host_header)[1] or self.port
        error = self.check_host(host_header)
        needs_token = path == "/" or path.startswith("/api/")
        if error is None and needs_token and not self.token_ok(headers, query, port):
            error = 403, "missing or wrong token: open the address with ?token=... that yamcap review printed"
        if error is None:
            error = self.check_origin(method, headers, f"{scope.get('scheme', 'http')}://{host_header}")
        if error is not None:
            return await self._send_json(send, *error)
        extra = list(SECURITY_HEADERS)
        if path == "/" and self.token is not None and TOKEN_QUERY in query:
            # the token goes into a cookie that only this origin's own requests carry (the page's
            # script then takes it out of the address bar)
            cookie = f"{cookie_name(port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            extra.append((b"set-cookie", cookie.encode()))
        return await self.app(scope, receive, self._with_headers(send, extra))

    @staticmethod
    def _with_headers(send, extra):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        return wrapped

    async def _send_json(self, send, status: int, message: str):
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})


def launch_token(token: str | None, no_token: bool, host: str) -> tuple[str | None, list[str]]:
    """The token ``yamcap review`` runs with, and the warnings to print.

    ``token``: ``--token`` (None: a fresh one; "": none, which needs ``no_token``); ``no_token``:
    ``--no-token``; ``host``: ``--host``. Off loopback the token is mandatory. Raises
    :class:`~yamnet_capuchin.errors.YamcapError` for a combination that is refused."""
    from ..errors import YamcapError

    loopback = is_loopback(host)
    warnings = []
    if not loopback:
        warnings.append(f"--host {host} is not a loopback address: anyone who can reach this machine on the "
                        "port can open the page with the token, and the token travels unencrypted (plain http); "
                        "prefer SSH port forwarding (docs/review.md, Security)")
    if no_token or token == "":
        if not loopback:
            raise YamcapError(f"--host {host}: the token cannot be turned off off this machine's loopback address")
        if not no_token:
            raise YamcapError("--token '' turns the token check off: say so with --no-token as well")
        if token:
            raise YamcapError("--no-token and --token TOKEN contradict each other")
        warnings.append("no token check (--no-token): every local user and program can write labels and "
                        "start retraining; web pages from other origins are still refused")
        return None, warnings
    if token is not None and len(token) < 16:
        raise YamcapError("--token: use at least 16 characters (or leave it out for a random one)")
    return token or new_token(), warnings
