#!/usr/bin/env python3
"""COUNT GET requests to URL at the same moment, each on a connection of its own (threads released
together by a barrier), for the scale-to-zero tests: what each one got. Prints a JSON list of
{"status", "retry_after", "code", "version", "body"} (status null and body the error when no answer
came; version is the guest's X-Guest-Version).
Usage: burst.py URL COUNT [HOST]"""
import http.client
import json
import sys
import threading
import urllib.parse


def main():
    url, count = sys.argv[1], int(sys.argv[2])
    u = urllib.parse.urlsplit(url)
    host = sys.argv[3] if len(sys.argv) > 3 else u.netloc
    results = [None] * count
    barrier = threading.Barrier(count)

    def one(i):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        try:
            c.connect()
            barrier.wait(timeout=60)
            c.request("GET", u.path or "/", headers={"Host": host})
            r = c.getresponse()
            body = r.read().decode(errors="replace")
            code = None
            if r.getheader("Content-Type", "").startswith("application/json"):
                try:
                    code = json.loads(body)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    pass
            results[i] = {"status": r.status, "retry_after": r.getheader("Retry-After"), "code": code,
                          "version": r.getheader("X-Guest-Version"), "body": body}
        except Exception as e:  # noqa: BLE001 (a failure is a result here)
            results[i] = {"status": None, "retry_after": None, "code": None, "version": None, "body": repr(e)}
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
