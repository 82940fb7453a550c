"""CORS, proven by a real browser: headless Chromium loads a page from an allowed origin and from
another one, each calling the API with an Authorization header (so a preflight first).

CORS is the gateway's (template.yaml's CorsConfiguration, modelled by the local gateway): the page
reads the function's answers, and also the answers API Gateway makes itself, a throttled route's 429
and the integration timeout's 503, which without CORS headers a browser reports as a network error
instead of the status."""

import html
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import override
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import local_stack
from tests.fakes.auth_faults import AnyUserAuthHandler
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)

# Each step is fetched in turn; the page records "answered <status> <answer, error or message>" or,
# when the browser withholds the answer (no CORS), "blocked <error>".
PAGE = """<!doctype html><html><head><title>pending</title></head><body data-result="pending"><script>
(async () => {
  const results = [];
  for (const step of __STEPS__) {
    try {
      const r = await fetch("__API__" + step.path, {
        method: step.method, credentials: "include",
        headers: {"Authorization": "Bearer " + step.token, "Content-Type": "application/json"},
        body: step.body ? JSON.stringify(step.body) : undefined
      });
      const b = await r.json().catch(() => ({}));
      results.push("answered " + r.status + " " + (b.answer || b.error || b.message || ""));
    } catch (e) {
      results.push("blocked " + e);
    }
  }
  document.body.dataset.result = JSON.stringify(results);
})();
</script></body></html>"""


def ask(question: str, token: str = "dev-bob") -> dict:
    return {"method": "POST", "path": "/api/query", "token": token, "body": {"question": question, "k": 3}}


def serve_page(port, api, steps):
    page = PAGE.replace("__API__", api).replace("__STEPS__", json.dumps(steps)).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def results_in_browser(url, profile):
    assert CHROMIUM, "CI must install Chromium"
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=60000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    found = re.search(r'data-result="(\[[^"]*\])"', dom)  # the JSON list, its quotes escaped
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def browse(origin, api, steps, profile):
    server = serve_page(urlsplit(origin).port, api, steps)
    try:
        return results_in_browser(f"{origin}/page.html", profile)
    finally:
        server.shutdown()


def test_a_page_from_an_allowed_origin_gets_the_answer(stack_url, browser_page_origin, tmp_path):
    [result] = browse(browser_page_origin, stack_url, [ask("What is a beholder?")], tmp_path / "profile")

    assert result.startswith("answered 200 From the rules:"), result
    assert "beholder" in result.lower()


def test_a_page_from_another_origin_is_blocked(stack_url, tmp_path):
    [result] = browse(f"http://127.0.0.1:{free_port()}", stack_url, [ask("What is a beholder?")], tmp_path / "profile")

    assert result.startswith("blocked TypeError"), result


# --- API Gateway's own answers ------------------------------------------------------------------

GATEWAY_TIMEOUT_SECONDS = 5  # HTTP API's 30 s, shortened (LOCAL_API_TIMEOUT_SECONDS)
SLOW_AUTH_SECONDS = 8  # longer than the gateway waits; the function's auth timeout is longer still


class AuthSlowForOneUser(AnyUserAuthHandler):
    """Any ``u-<id>`` token is a user; ``u-slow``'s sign-in takes SLOW_AUTH_SECONDS, so a request of
    that user is still in the function when the gateway stops waiting for it."""

    @override
    def do_GET(self) -> None:
        if (self.headers.get("Authorization") or "").endswith("u-slow"):
            time.sleep(SLOW_AUTH_SECONDS)
        super().do_GET()


@pytest.fixture(scope="module")
def throttled_api(tmp_path_factory, browser_page_origin) -> Iterator[str]:
    """A stack of its own: POST /api/query throttled to one request (a route's RouteSettings; its
    preflights have a route and a bucket of their own), a gateway timeout of a few seconds and an auth
    API that keeps one user waiting past it."""
    auth = ThreadingHTTPServer(("127.0.0.1", 0), AuthSlowForOneUser)
    auth.daemon_threads = True
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    throttle = {"POST /api/query": {"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 0.001}}
    try:
        with local_stack(
            tmp_path_factory.mktemp("throttled"),
            CORS_ORIGINS=browser_page_origin,
            AUTH_API_URL=f"http://127.0.0.1:{auth.server_address[1]}",
            AUTH_TIMEOUT_SECONDS=str(SLOW_AUTH_SECONDS + 2),
            LOCAL_API_ROUTE_THROTTLE=json.dumps(throttle),
            LOCAL_API_TIMEOUT_SECONDS=str(GATEWAY_TIMEOUT_SECONDS),
        ) as url:
            yield url
    finally:
        auth.shutdown()


def test_a_page_reads_the_gateway_s_own_throttled_429_and_timeout_503(throttled_api, browser_page_origin, tmp_path):
    steps = [
        ask("What is a beholder?", token="u-reader"),
        ask("What is a beholder, again?", token="u-reader"),  # the route's one token is spent
        {"method": "GET", "path": "/api/usage", "token": "u-slow"},  # the gateway stops waiting
    ]

    answered, throttled, timed_out = browse(browser_page_origin, throttled_api, steps, tmp_path / "profile")

    assert answered.startswith("answered 200 From the rules:"), answered
    # the status and HTTP API's own body, {"message":"Too Many Requests"} / {"message":"Service Unavailable"}
    assert (throttled, timed_out) == ("answered 429 Too Many Requests", "answered 503 Service Unavailable")
