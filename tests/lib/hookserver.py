#!/usr/bin/env python3
"""A webhook receiver for the tests, run inside the test's network namespace:
hookserver.py PORT DIR. Every request is appended to DIR/requests.jsonl as
{"path", "method", "headers", "body"}. Answers by path:
  /gate  403 {"approved": false} until the file DIR/open exists, then 200;
  /slow  sleeps 5 s, then 200 (longer than a test's webhook timeout);
  /fail  500;
  /prom  a Prometheus instant-query answer whose value is 0.05 (as Prometheus writes it, a string);
  anything else 200 {"ok": true}.
It stops by itself after 15 minutes."""
import http.server
import json
import os
import sys
import threading
import time

port, folder = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        with lock, open(os.path.join(folder, "requests.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"path": self.path, "method": self.command, "headers": dict(self.headers.items()),
                                "body": body, "time": time.time()}) + "\n")
        if self.path == "/slow":
            time.sleep(5)
        if self.path == "/gate" and not os.path.exists(os.path.join(folder, "open")):
            status, answer = 403, {"approved": False}
        elif self.path == "/fail":
            status, answer = 500, {"ok": False}
        elif self.path.startswith("/prom"):
            status, answer = 200, {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"service": "web"}, "value": [time.time(), "0.05"]}]}}
        else:
            status, answer = 200, {"ok": True}
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up first (the /slow timeout)

    do_GET = do_POST = do_HEAD = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
threading.Timer(900, server.shutdown).start()
server.serve_forever()
