#!/usr/bin/env python3
"""The web view's files: served from the binary at /ui/ on the unix socket and on TCP, with
no credentials (they hold no data) while every API route still asks for its token; the right
content types; an unknown file is a JSON 404; other methods are refused."""
import http.client
import os
import select
import socket
import subprocess
import time
import urllib.parse

import cdp
from aviarytest import (Client, Daemon, aviary_path, check_error, create_service, free_tcp_port, is_, like, main, ok,
                        push_version, skip)

UI_DIR = os.path.join(os.environ.get("AVIARY_SOURCE_ROOT", "."), "daemon", "ui")


def source(name):
    with open(os.path.join(UI_DIR, name), encoding="utf-8") as f:
        return f.read()


def run_tcp(tmp_token):
    port = free_tcp_port()
    with Daemon(config={"listen": f"127.0.0.1:{port}", "token_file": tmp_token}) as d:
        anonymous = Client(tcp_port=port)
        r = anonymous.get("/ui/")
        is_(r.status, 200, "GET /ui/ on TCP without a token: 200", repr(r))
        is_(r.header("Content-Type"), "text/html; charset=utf-8", "as HTML")
        is_(r.raw.decode(), source("index.html"), "the page is daemon/ui/index.html, byte for byte")
        for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")):
            r = anonymous.get(f"/ui/{name}")
            ok(r.status == 200 and r.header("Content-Type") == ctype and r.raw.decode() == source(name),
               f"/ui/{name}: 200, {ctype}, the embedded file", repr(r))
        r = anonymous.request("HEAD", "/ui/")
        is_(r.status, 200, "HEAD /ui/: 200")
        check_error(anonymous.get("/ui/secrets.json"), 404, "not-found", "an unknown file: a JSON 404")
        check_error(anonymous.get("/v1/services"), 401, "unauthorized", "the API still wants a token")
        check_error(anonymous.get("/v1/events?follow=true"), 401, "unauthorized", "and so does the event stream")
        check_error(anonymous.get("/nope"), 401, "unauthorized", "an unknown path without a token: 401, as before")
        check_error(anonymous.request("POST", "/ui/"), 401, "unauthorized",
                    "only GET and HEAD of the page are open: a POST without a token is 401")
        r = Client(tcp_port=port, token=open(tmp_token).read().strip()).request("POST", "/ui/")
        is_(r.status, 405, "with a token, POST /ui/: 405")


def fetch(url, method="GET", headers=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, u.path + (("?" + u.query) if u.query else ""), headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), body


def forwarder(d):
    """aviary ui: the URL first, a key in it, GET and HEAD only, the event stream through it."""
    p = subprocess.Popen([aviary_path(), "--socket", d.socket_path, "ui"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        ready = select.select([p.stdout], [], [], 10)[0]
        url = p.stdout.readline().strip() if ready else ""
        like(url, r"^http://127\.0\.0\.1:\d+/[0-9a-f]{32}/ui/$", "aviary ui prints the URL first, with a key in it")
        if not url:
            return
        status, hdrs, body = fetch(url)
        ok(status == 200 and body.decode() == source("index.html"), "the page through the forwarder")
        base = url[:-len("/ui/")]
        status, _, body = fetch(base + "/v1/services")
        ok(status == 200 and b'"items"' in body, "the API through it, as the user who runs it", body[:200])
        u = urllib.parse.urlsplit(url)
        status, _, body = fetch(f"http://127.0.0.1:{u.port}/ui/")
        is_(status, 403, "without the key: 403", body)
        status, _, body = fetch(f"http://127.0.0.1:{u.port}/{'0' * 32}/ui/")
        is_(status, 403, "with another key: 403")
        status, _, body = fetch(base + "/v1/images", method="POST", headers={"Content-Type": "application/json"})
        is_(status, 405, "a POST through it: 405 (the view is read-only)", body)
        is_(d.client.get("/v1/images").json["items"], [], "and nothing was made")

        # The event stream flows through, as it comes.
        s = socket.create_connection(("127.0.0.1", u.port), timeout=10)
        s.sendall(f"GET {urllib.parse.urlsplit(base).path}/v1/events?follow=true HTTP/1.1\r\nHost: x\r\n"
                  "Accept: text/event-stream\r\n\r\n".encode())
        time.sleep(0.5)
        d.client.post("/v1/images", {"name": "live"})
        got, end = b"", time.monotonic() + 10
        while b"image.create" not in got and time.monotonic() < end:
            if select.select([s], [], [], 1)[0]:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        s.close()
        ok(b"text/event-stream" in got and b"image.create" in got and b"image/live" in got,
           "an event committed after the stream opened comes through the forwarder", got[-500:])
    finally:
        p.terminate()
        p.wait(timeout=10)


def wait_js(browser, expression, timeout=30):
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.2)
    return value


def in_browser(d):
    """Headless Chromium loads the page through aviary ui with a rollout in progress: the DOM,
    after the scripts ran, holds the service, both versions and the weights, and an event
    committed later shows up without a reload. A screenshot is kept as an artefact."""
    if not cdp.chromium_path():
        skip("the web view in a real browser", "chromium is not installed (tests/setup.sh installs it)")
        return
    c = d.client
    push_version(c, "app", "1")
    push_version(c, "app", "2")
    create_service(c, "web", listen="127.0.0.1:18461", replicas=1)
    c.post("/v1/services/web/rollouts", {"version": "app:1"})
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"canary": {
        "steps": [{"setWeight": 25}, {"pause": {}}], "analysis": {"enabled": False}}}})
    is_(r.status, 201, "a rollout from app:1 to app:2 is in progress")
    weights = c.get("/v1/services/web/traffic").json["weights"]
    p = subprocess.Popen([aviary_path(), "--socket", d.socket_path, "ui"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    browser = None
    try:
        url = p.stdout.readline().strip()
        browser = cdp.Browser()
        browser.open(url)
        ok(wait_js(browser, "!!document.querySelector('#services tr[data-service=\"web\"]')"),
           "the page lists the service web")
        ok(wait_js(browser, "(document.querySelector('.rollout-from') || {}).dataset?.version === 'app:1' && "
                            "(document.querySelector('.rollout-to') || {}).dataset?.version === 'app:2'"),
           "and its rollout's two versions, app:1 and app:2")
        shown = wait_js(browser, "(() => { const s = document.querySelector('.weight-stable'), "
                                 "c = document.querySelector('.weight-canary'); "
                                 "return s && c ? [Number(s.dataset.weight), Number(c.dataset.weight)] : null; })()")
        is_(shown, [weights["stable"], weights["canary"]], "and the current weights, as the traffic view has them")
        browser.evaluate("window.__aviaryLoaded = 'same page'")
        is_(c.request("POST", "/v1/services/web/rollouts/current/pause").status, 200, "the rollout is paused meanwhile")
        got = wait_js(browser, "Array.from(document.querySelectorAll('#events li')).map(li => li.textContent)"
                               ".find(t => t.includes('rollout.pause')) || ''")
        ok(got and "service/web" in got, "the new event appears in the page's feed", got)
        is_(browser.evaluate("window.__aviaryLoaded"), "same page", "without a reload")
        ok(wait_js(browser, "document.querySelector('.phase-Paused') !== null"), "and the rollout shows Paused")
        build = os.path.dirname(os.path.dirname(os.path.abspath(aviary_path())))  # build/client/aviary
        shot = os.path.join(build, "meson-logs", "ui-screenshot.png")
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        browser.screenshot(shot)
        ok(os.path.getsize(shot) > 1000, f"a screenshot is kept: {shot}")
    finally:
        if browser:
            browser.close()
        p.terminate()
        p.wait(timeout=10)


def run():
    with Daemon() as d:
        in_browser(d)
    with Daemon() as d:
        r = d.client.get("/ui/")
        ok(r.status == 200 and "<title>aviary</title>" in r.raw.decode(), "GET /ui/ on the unix socket: the page")
        forwarder(d)
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"aviary-ui-token-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    os.chmod(tmp, 0o600)
    try:
        run_tcp(tmp)
    finally:
        os.unlink(tmp)


main(run)
