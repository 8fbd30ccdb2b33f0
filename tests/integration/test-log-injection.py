#!/usr/bin/env python3
"""Log injection (issue 14, item 4): a request path with an encoded newline, CR, ESC or C1
control, with or without a token, and a refused JSON value holding a newline, must each leave
exactly one log line in which those characters show escaped: no forged line, no raw control
sequence. The JSON error message quoting them is escaped the same way."""
import os
import tempfile

from aviarytest import Daemon, free_tcp_port, is_, main, ok, parse_raw_response, raw_http, raw_request


def tcp_request(port, data):
    """The status of the answer to DATA sent to 127.0.0.1:PORT (0: none)."""
    parsed = parse_raw_response(raw_http(("127.0.0.1", port), data))
    return parsed[0] if parsed else 0

FORGED = "06:00:00.000 aviaryd info: POST /v1/tokens"
# The probe's path: a forged line, a screen-clearing escape; then the same with CR LF and C1.
PATHS = [
    "/v1/x%0A06:00:00.000%20aviaryd%20info:%20POST%20/v1/tokens%20%E2%86%92%20201%20[uid:0%20%E2%80%A6]%1B[2J",
    "/v1/x%0D%0A06:00:00.000%20aviaryd%20info:%20POST%20/v1/tokens%20%E2%86%92%20201",
    "/v1/x%C2%9B2J%C2%85" + "06:00:00.000%20aviaryd%20info:%20POST%20/v1/tokens",
]


def log_lines(d):
    with open(d.log_path, "rb") as f:
        return f.read().split(b"\n")


def check_log(d, before, desc):
    lines = log_lines(d)[before:]
    raw = b"\n".join(lines)
    ok(not any(line.startswith(FORGED.encode()) for line in lines), f"{desc}: no forged log line",
       raw.decode("utf-8", "replace"))
    ok(b"\x1b" not in raw and b"\r" not in raw and b"\xc2\x9b" not in raw and b"\xc2\x85" not in raw,
       f"{desc}: no ESC, CR or C1 control in the log", repr(raw[:800]))
    return lines


def body():
    tmp = tempfile.mkdtemp(prefix="aviary-logi-")
    token = os.urandom(16).hex()
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    port = free_tcp_port()
    with Daemon(config={"token_file": token_file}, args=["--listen", f"127.0.0.1:{port}"]) as d:
        for i, path in enumerate(PATHS):
            before = len(log_lines(d)) - 1
            r = raw_request(d.socket_path, "GET", path, body=None)
            is_(r.status, 404, f"path {i} on the unix socket: 404")
            msg = (r.json or {}).get("error", {}).get("message", "")
            ok("\n" not in msg and "\r" not in msg and "\x1b" not in msg and "\x9b" not in msg,
               f"path {i}: the error message quotes the path escaped", repr(msg))
            lines = check_log(d, before, f"path {i} on the unix socket")
            ok(sum(1 for line in lines if b"no such API route" in line) == 1,
               f"path {i}: exactly one log line for the request", b"\n".join(lines).decode("utf-8", "replace"))

            # Without a token on TCP: refused (401) and logged likewise.
            before = len(log_lines(d)) - 1
            status = tcp_request(port, f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            is_(status, 401, f"path {i} on TCP without a token: 401")
            check_log(d, before, f"path {i} on TCP without a token")

        # A newline inside a refused JSON value: refused as text that is not printable, and
        # nothing forged.
        before = len(log_lines(d)) - 1
        r = d.client.post("/v1/images", {"name": "x\n" + FORGED})
        is_(r.status, 422, "an image name holding a newline: 422")
        ok("\n" not in r.json["error"]["message"], "its message holds no newline", repr(r.json["error"]["message"]))
        check_log(d, before, "the refused image name")

        # A header value the error message quotes (If-Match), with ESC and C1 bytes in it.
        ok(d.client.post("/v1/images", {"name": "web"}).status == 201, "image web created")
        before = len(log_lines(d)) - 1
        r = raw_request(d.socket_path, "DELETE", "/v1/images/web",
                        headers={"If-Match": '"x\x1b[2J\u009b31m"'}, body=None)
        is_(r.status, 412, "If-Match with ESC and C1 bytes: 412")
        msg = (r.json or {}).get("error", {}).get("message", "")
        ok("\x1b" not in msg and "\x9b" not in msg and "\\x1b[2J" in msg,
           "the message quotes the header with its controls escaped", repr(msg))
        lines = check_log(d, before, "the quoted If-Match")
        ok(any(b"\\x1b[2J" in line for line in lines), "the log shows the ESC escaped",
           b"\n".join(lines).decode("utf-8", "replace"))


main(body)
