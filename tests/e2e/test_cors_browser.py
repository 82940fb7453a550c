"""CORS, proven by a real browser: headless Chromium loads a page from an allowed origin and from
another one, each calling POST /api/query with an Authorization header (so a preflight first)."""

import html
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True)

PAGE = """<!doctype html><html><head><title>pending</title></head><body data-result="pending"><script>
fetch("{api}/api/query", {{
  method: "POST", credentials: "include",
  headers: {{"Authorization": "Bearer dev-bob", "Content-Type": "application/json"}},
  body: JSON.stringify({{question: "What is a beholder?", k: 3}})
}}).then(r => r.json().then(b => {{
  document.body.dataset.result = "answered " + r.status + " " + (b.answer || b.error);
}})).catch(e => {{ document.body.dataset.result = "blocked " + e; }});
</script></body></html>"""


def serve_page(port, api):
    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = PAGE.format(api=api).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def result_in_browser(url, profile):
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
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'data-result="([^"]*)"', dom)
    assert found, dom[-2000:]
    return html.unescape(found.group(1))


def test_a_page_from_an_allowed_origin_gets_the_answer(stack_url, browser_page_origin, tmp_path):
    server = serve_page(urlsplit(browser_page_origin).port, stack_url)
    try:
        result = result_in_browser(f"{browser_page_origin}/page.html", tmp_path / "profile")
    finally:
        server.shutdown()

    assert result.startswith("answered 200 From the rules:"), result
    assert "beholder" in result.lower()


def test_a_page_from_another_origin_is_blocked(stack_url, tmp_path):
    other = free_port()
    server = serve_page(other, stack_url)
    try:
        result = result_in_browser(f"http://127.0.0.1:{other}/page.html", tmp_path / "profile")
    finally:
        server.shutdown()

    assert result.startswith("blocked TypeError"), result
