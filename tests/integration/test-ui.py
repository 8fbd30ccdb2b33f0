#!/usr/bin/env python3
"""The web view's files: served from the binary at /ui/ on the unix socket and on TCP, with
no credentials (they hold no data) while every API route still asks for its token; the right
content types; an unknown file is a JSON 404; other methods are refused."""
import os

from aviarytest import Client, Daemon, check_error, free_tcp_port, is_, main, ok

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


def run():
    with Daemon() as d:
        r = d.client.get("/ui/")
        ok(r.status == 200 and "<title>aviary</title>" in r.raw.decode(), "GET /ui/ on the unix socket: the page")
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"aviary-ui-token-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    os.chmod(tmp, 0o600)
    try:
        run_tcp(tmp)
    finally:
        os.unlink(tmp)


main(run)
