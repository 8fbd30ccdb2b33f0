#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/ (see README.md). Each seed is named
for what it exercises. Inputs that fuzzing found are added to the corpus as files of their own
(named found-*); this script leaves those alone. Usage: tests/fuzz/seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz-router-json: "METHOD PATH\n" + body ----

def rj(name, line, body=None):
    if body is None:
        write("fuzz-router-json", name, line)
    else:
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        write("fuzz-router-json", name, line.encode() + b"\n" + body)


for name, line in [
    ("route-health", "GET /v1/health"),
    ("route-version-get", "GET /v1/images/web/versions/1.0"),
    ("route-revoke", "POST /v1/images/web/versions/1.0/revoke"),
    ("route-head-blob", "HEAD /v1/blobs/sha256:00"),
    ("route-put-version-405", "PUT /v1/images/web/versions/1.0"),
    ("route-post-events-405", "POST /v1/events"),
    ("route-options-unknown-method", "OPTIONS /v1/services"),
    ("route-empty-segment", "GET /v1/images//versions"),
    ("route-trailing-slash", "GET /v1/health/"),
    ("route-relative", "GET v1/health"),
    ("route-root", "GET /"),
    ("route-empty", ""),
    ("route-no-path", "GET"),
    ("route-rollout-action-405", "GET /v1/services/web/rollouts/12/promote"),
    ("route-rollout-retry", "POST /v1/services/web/rollouts/12/retry"),
    ("route-patch-service", "PATCH /v1/services/web"),
    ("route-delete-blob", "DELETE /v1/blobs/sha256:" + "ab" * 32),
    ("route-instance-console", "GET /v1/instances/web-1a2b/console"),
    ("route-brace-param", "GET /v1/images/{name}"),
    ("route-slashes", "GET //v1//health//"),
    ("route-deep", "GET /v1/services/a/rollouts/b/c/d/e/f"),
    ("route-lowercase-method", "get /v1/health"),
]:
    rj(name, line)
rj("route-utf8-param", "GET /v1/images/\u00e9\u00e8/versions")
rj("route-long-param", "GET /v1/images/" + "x" * 300)

version = {"version": "1.0", "kernel": "sha256:" + "a" * 64, "cmdline": "console=ttyS0 ip={ip}",
           "memory_mib": 128, "vcpus": 1, "port": 8080, "labels": {"team": "edge"}}
rj("body-version-valid", "POST /v1/images/web/versions", version)
rj("body-version-nullable", "POST /v1/images/web/versions", dict(version, initrd=None, vcpus=None))
rj("body-missing-required", "POST /v1/images/web/versions", {"kernel": "k"})
rj("body-unknown-field", "POST /v1/images/web/versions", dict(version, colour="blue"))
rj("body-wrong-type", "POST /v1/images/web/versions", dict(version, memory_mib="128"))
rj("body-out-of-range", "POST /v1/images/web/versions", dict(version, memory_mib=15, port=70000))
rj("body-long-string", "POST /v1/images/web/versions", dict(version, kernel="k" * 81))
rj("body-nul-in-string", "POST /v1/images/web/versions", '{"version":"1.0\\u0000x","kernel":"k"}')
rj("body-labels-not-strings", "POST /v1/images/web/versions", dict(version, labels={"a": 1}))
rj("body-health-check", "POST /v1/services",
   dict(version, health_check={"path": "/healthz", "interval_ms": 500}))
rj("body-health-check-bad", "POST /v1/services", dict(version, health_check={"interval_ms": 5}))
rj("body-bool", "POST /v1/images/web/versions", dict(version, autostart=True))
rj("body-empty", "POST /v1/images", "")
rj("body-not-object", "POST /v1/images", "[1,2,3]")
rj("body-null", "POST /v1/images", "null")
rj("body-malformed", "POST /v1/images", '{"name": "web",}')
rj("body-duplicate-keys", "POST /v1/images", '{"name":"a","name":"b"}')
rj("body-invalid-utf8", "POST /v1/images", b'{"name":"\xc3\x28"}')
rj("body-overlong-utf8", "POST /v1/images", b'{"name":"\xc0\xaf"}')
rj("body-number-overflow", "POST /v1/images", '{"memory_mib": 99999999999999999999999}')
rj("body-real-for-integer", "POST /v1/images", '{"memory_mib": 128.0}')
rj("body-deep-nesting", "POST /v1/images", '{"a":' + "[" * 200 + "]" * 200 + "}")
rj("body-long-unicode-key", "POST /v1/images", '{"' + "\u00e9" * 300 + '": 1}')
rj("body-long-key-strategy", "POST /v1/services/web/rollouts",
   {"canary": {"analysis": {"successRate": {"\u20ac" * 200: 1}}}})

canary = {"steps": [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"analysis": {"interval": "5s"}},
                    {"setWeight": 50.5}, {"pause": {}}, {"setWeight": 100}],
          "canaryReplicas": 2,
          "analysis": {"enabled": True, "interval": "1s", "minSampleSize": 10, "failureLimit": 2,
                       "consecutiveSuccessLimit": 3, "successRate": {"min": 0.95, "maxDropFromStable": None},
                       "latencyP99": {"maxMs": 250.5, "maxRatioToStable": 0, "floorMs": 20}},
          "progressDeadline": "10m", "abortScaleDownDelay": "0s", "scaleDownDelay": "1500ms",
          "stickiness": {"header": "X-User"}, "testerHeader": True}
rj("strategy-full", "POST /v1/services/web/rollouts", {"strategy": {"canary": canary}})
rj("strategy-preset", "POST /v1/services/web/rollouts", {"strategy": {"preset": "Linear10PercentEvery1Minute"}})
rj("strategy-preset-unknown", "POST /v1/services/web/rollouts", {"strategy": {"preset": "Fast"}})
rj("strategy-preset-and-steps", "POST /v1/services/web/rollouts",
   {"strategy": {"preset": "AllAtOnce", "canary": {"steps": [{"setWeight": 100}]}}})
rj("strategy-preset-other-steps", "POST /v1/services/web/rollouts",
   {"strategy": {"preset": "AllAtOnce", "canary": {"steps": [{"setWeight": 50}]}}})
rj("strategy-null", "POST /v1/services/web/rollouts", {"strategy": None})
rj("strategy-not-object", "POST /v1/services/web/rollouts", {"strategy": "AllAtOnce"})
rj("strategy-body-itself", "POST /v1/services/web/rollouts", {"canary": {"steps": [{"setWeight": 1.25}]}})
rj("strategy-weight-decimals", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"setWeight": 12.345}]}})
rj("strategy-weight-0.29", "POST /v1/services/web/rollouts", {"canary": {"steps": [{"setWeight": 0.29}]}})
rj("strategy-weight-negative", "POST /v1/services/web/rollouts", {"canary": {"steps": [{"setWeight": -1}]}})
rj("strategy-64-steps", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"setWeight": i} for i in range(64)]}})
rj("strategy-65-steps", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"setWeight": 1}] * 65}})
rj("strategy-two-keys-step", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"setWeight": 1, "pause": {}}]}})
rj("strategy-duration-huge", "POST /v1/services/web/rollouts",
   {"canary": {"progressDeadline": "1000000000h", "scaleDownDelay": "1000000001s"}})
rj("strategy-duration-bad", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"pause": {"duration": "0ms"}}], "abortScaleDownDelay": "5 m"}})
rj("strategy-analysis-disabled-step", "POST /v1/services/web/rollouts",
   {"canary": {"steps": [{"analysis": {"enabled": False}}]}})
rj("strategy-reals", "POST /v1/services/web/rollouts",
   {"canary": {"analysis": {"successRate": {"min": 1e-300},
                            "latencyP99": {"maxMs": 1.7976931348623157e308, "maxRatioToStable": 1.0000000000000002,
                                           "floorMs": 0.1}}}})
rj("strategy-reals-bad", "POST /v1/services/web/rollouts",
   {"canary": {"analysis": {"latencyP99": {"maxRatioToStable": 0.5}}}})
rj("strategy-sticky-both", "POST /v1/services/web/rollouts",
   {"canary": {"stickiness": {"header": "a", "cookie": "b"}}})
rj("strategy-sticky-bad-token", "POST /v1/services/web/rollouts",
   {"canary": {"stickiness": {"cookie": "a b"}}})
rj("strategy-sticky-long", "POST /v1/services/web/rollouts",
   {"canary": {"stickiness": {"header": "h" * 64}}})
rj("strategy-negative-zero", "POST /v1/services/web/rollouts",
   '{"canary":{"steps":[{"setWeight":-0.0}],"analysis":{"successRate":{"min":-0.0}}}}')

# ---- fuzz-template: template \0 ip \0 prefix \0 netmask \0 gateway \0 instance \0 service \0 version ----

VARS = ["10.0.0.2", "24", "255.255.255.0", "10.0.0.1", "web-1a2b3c4d", "web", "web:1.0"]


def tp(name, template, values=VARS):
    write("fuzz-template", name, "\0".join([template] + list(values)).encode())


tp("readme-cmdline", "console=ttyS0 ip={ip}::{gateway}:{netmask}::eth0:off")
tp("all-placeholders", "{ip}/{prefix} {netmask} {gateway} {instance} {service} {version}")
tp("no-values", "ip={ip} gw={gateway}", [])
tp("some-values", "{ip} {prefix} {version}", VARS[:2])
tp("empty", "")
tp("literal", "console=ttyS0 quiet")
tp("escaped-braces", "json={{\"a\":1}} x={{ip}}")
tp("escaped-then-var", "{{{ip}}}")
tp("unknown", "a={unknown} b")
tp("empty-placeholder", "{}")
tp("unclosed", "ip={ip")
tp("lone-open", "{")
tp("lone-close", "}")
tp("close-after-var", "{ip}}")
tp("nested", "{a{ip}}")
tp("case", "{IP}")
tp("space", "{ ip}")
tp("values-with-braces", "{ip} {service}", ["{gateway}", "", "", "", "", "}{", ""])
tp("utf8", "\u00e9={ip} \u20ac{{\u00e9}}")
tp("long", "x" * 1000 + "{ip}" * 50)
tp("many-fields", "{ip}", VARS + ["extra", "more"])

# ---- fuzz-domain-xml: flags, memory (u32 LE), vcpus (u16 LE), then NUL-separated strings ----

KVM, KVM_REQUIRED, NO_INITRD, NO_BRIDGE, NO_MAC = 1, 2, 4, 8, 16
SPEC = ["aviary-web-1a2b", "web-1a2b", "web", "web:1.0", "/var/lib/aviary/blobs/sha256/aa",
        "/var/lib/aviary/blobs/sha256/bb", "console=ttyS0 ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
        "aviary0", "52:54:00:12:34:56", "/run/aviary/console/web-1a2b.log"]


def dx(seed, flags=0, memory=128, vcpus=1, **changes):
    fields = list(SPEC)
    keys = ["name", "instance", "service", "version", "kernel", "initrd", "cmdline", "bridge", "mac", "console"]
    for k, v in changes.items():
        fields[keys.index(k)] = v
    while fields and fields[-1] is None:
        fields.pop()
    body = b"\0".join(f.encode() if isinstance(f, str) else f for f in fields)
    write("fuzz-domain-xml", seed, struct.pack("<BIH", flags, memory, vcpus) + body)


dx("typical-tcg")
dx("typical-kvm", KVM | KVM_REQUIRED, 256, 2)
dx("no-initrd-no-nic", KVM | NO_INITRD | NO_BRIDGE)
dx("nic-without-mac", NO_MAC)
dx("hostile", name="aviary-<&>'\"x", instance="i-<1>&'\"", service="web&<svc>", version="web:1.0'\"<>&",
   kernel="/blobs/k&<'\">", initrd="/blobs/i]]>&", cmdline="console=ttyS0 a=<b> c=&amp; d='e' f=\"g\" ]]> \u00e9",
   bridge="br<&>", console="/var/log/c'&\"<>.log")
dx("cmdline-entities", cmdline="&lt; &#x41; &#0; <![CDATA[x]]> <!-- c --> <?pi?>")
dx("cmdline-spaces", cmdline="  a   b  ")
dx("cmdline-empty", cmdline="")
dx("cmdline-tab", cmdline="a\tb")
dx("cmdline-newline", cmdline="a\nb")
dx("cmdline-del", cmdline="a\x7fb")
dx("cmdline-c1", cmdline="a\u0085b")
dx("cmdline-astral", cmdline="\U0001F600 \U0010FFFF")
dx("cmdline-bmp-edge", cmdline="\ud7ff \ue000 \ufffd")
dx("invalid-utf8", service=b"\xff\xfe")
dx("truncated-utf8", cmdline=b"abc\xe2\x82")
dx("surrogate", cmdline=b"\xed\xa0\x80")
dx("overlong", cmdline=b"\xc0\xbc")
dx("memory-zero", memory=0)
dx("vcpus-zero", vcpus=0)
dx("memory-max", memory=0xFFFFFFFF, vcpus=0xFFFF)
dx("missing-fields", name=None, instance=None, service=None, version=None, kernel=None, initrd=None,
   cmdline=None, bridge=None, mac=None, console=None)
dx("missing-console", console=None)
dx("metadata-too-long", instance="i" * 64, version="v" * 300)
dx("metadata-fits", instance="i" * 63, service="s" * 63, version="v" * 255)
dx("empty-strings", name="", instance="", service="", version="", kernel="", initrd="", bridge="", mac="",
   console="")
dx("quotes-in-attributes", bridge="a\"b'c", mac="'\"", console="\"'")
dx("xmlns-lookalike", version="xmlns:aviary=\"x\"", instance="https://aviary.dev/xmlns/domain/1")

# ---- fuzz-proxy-http: flags byte, client bytes [, "~backend~\n", backend bytes] ----

HALF_CLOSE, BACKEND_CLOSES, PICK_NONE, PICK_DEAD_FIRST, SHORT_TIMEOUT, PIECES = 1, 2, 8, 12, 16, 32
OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


def px(name, flags, client, backend=None):
    data = bytes([flags]) + (client.encode() if isinstance(client, str) else client)
    if backend is not None:
        data += b"~backend~\n" + (backend.encode() if isinstance(backend, str) else backend)
    write("fuzz-proxy-http", name, data)


GET = "GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"
px("get", 0, GET)
px("get-close", 0, "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
px("get-half-close", HALF_CLOSE, GET)
px("get-pieces", PIECES, "GET /pieces?x=1 HTTP/1.1\r\nHost: svc\r\nX-Long: " + "v" * 40 + "\r\n\r\n")
px("head", 0, "HEAD / HTTP/1.1\r\nHost: svc\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
px("http10", 0, "GET / HTTP/1.0\r\n\r\n")
px("http10-keepalive-chunked", 0, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
px("post-body", 0, "POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 11\r\n\r\nhello world")
px("post-chunked-trailers", 0,
   "POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
px("post-cut-short", HALF_CLOSE, "POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\nshort")
px("post-incomplete-body", 0, "POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 15\r\n\r\nhello world")
px("pipelined", 0, GET * 3)
px("pipelined-then-garbage", 0, GET + "BLAH\r\n\r\n")
px("hop-by-hop", 0, "GET / HTTP/1.1\r\nHost: svc\r\nConnection: X-Foo, keep-alive\r\nX-Foo: bar\r\n"
   "Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\n\r\n")
px("xff-request-id", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 10.1.1.1\r\nX-Request-Id: abc\r\n\r\n")
px("empty-request-id", 0, "GET / HTTP/1.1\r\nX-Request-Id:\r\nX-Request-Id: two\r\n\r\n")
px("cookies", 0, "GET / HTTP/1.1\r\nCookie: a=1; session = s1 ; b\r\nCookie: session=s2\r\n"
   "X-Aviary-Version:  canary \t\r\n\r\n")
px("cookie-edge", 0, "GET / HTTP/1.1\r\nCookie: ;;=;session;session=\r\nHost:\r\n\r\n")
px("connect", 0, "CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n")
px("options-star", 0, "OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n")
px("absolute-form", 0, "GET http://svc/x HTTP/1.1\r\nHost: svc\r\n\r\n")
px("garbage", 0, "\x00\x01\x02 hello\r\n\r\n")
px("bad-version", 0, "GET / HTTP/9.9\r\n\r\n")
px("cl-and-te", 0, "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
px("two-content-lengths", 0, "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
px("obs-fold", 0, "GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n")
px("head-too-large", 0, "GET / HTTP/1.1\r\nX-Big: " + "b" * 8300 + "\r\n\r\n")
px("too-many-headers", 0, "GET / HTTP/1.1\r\n" + "".join("H%d: v\r\n" % i for i in range(101)) + "\r\n")
px("upgrade", 0, "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
px("expect-100", 0, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
   "HTTP/1.1 100 Continue\r\n\r\n" + OK)
px("pick-none", PICK_NONE, GET)
px("pick-none-post", PICK_NONE, "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
px("dead-first-get", PICK_DEAD_FIRST, GET)
px("dead-first-post", PICK_DEAD_FIRST, "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
px("backend-silent-504", SHORT_TIMEOUT, GET, "")
px("backend-chunked", 0, GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
   "4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\nT: x\r\n\r\n")
px("backend-chunked-and-length", 0, GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"
   "4\r\nwiki\r\n0\r\n\r\n")
px("backend-close-delimited", BACKEND_CLOSES, GET, "HTTP/1.1 200 OK\r\n\r\nuntil close")
px("backend-http10", 0, GET, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
px("backend-garbage", 0, GET, "NOT HTTP AT ALL\r\n\r\n")
px("backend-204-with-body", 0, GET, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello")
px("backend-304", 0, GET, "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n")
px("backend-101", 0, GET, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
px("backend-extra-bytes", 0, GET, OK + "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
px("backend-short-body", BACKEND_CLOSES, GET, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
px("backend-hop-by-hop", 0, GET, "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\n"
   "Keep-Alive: timeout=1\r\nContent-Length: 0\r\n\r\n")
px("backend-big-head", 0, GET, "HTTP/1.1 200 OK\r\nX-Big: " + "b" * 8300 + "\r\nContent-Length: 0\r\n\r\n")
px("backend-status-999", 0, GET, "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n")
px("backend-no-reason", 0, GET, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
px("backend-connection-close", 0, GET * 2, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
px("backend-closes-keepalive", BACKEND_CLOSES, GET * 2, OK)
# Request smuggling and the framing rules (issue 14): each must reach the backend as exactly the
# client's requests, or be refused.
SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"
NEXT = "GET /next HTTP/1.1\r\nHost: svc\r\nCookie: secret=1\r\n\r\n"


def carrier(fields):
    return ("POST /carrier HTTP/1.1\r\nHost: svc\r\n" + fields + "Content-Length: %d\r\n\r\n" % len(SMUGGLED)
            + SMUGGLED + NEXT)


px("smuggle-connection-content-length", 0, carrier("Connection: Content-Length\r\n"))
px("smuggle-connection-content-length-lower", 0, carrier("connection: content-length\r\n"))
px("smuggle-second-connection-field", 0, carrier("Connection: keep-alive\r\nConnection: x, Content-Length\r\n"))
px("smuggle-connection-transfer-encoding", 0,
   "POST /c HTTP/1.1\r\nHost: svc\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
   "5\r\nhello\r\n0\r\n\r\n" + NEXT)
px("smuggle-connection-host-xff-id", 0,
   "GET / HTTP/1.1\r\nHost: svc\r\nConnection: Host, X-Forwarded-For, X-Request-Id\r\nX-Request-Id: r\r\n\r\n")
px("smuggle-post-capture", 0,
   "POST /a HTTP/1.1\r\nHost: svc\r\nConnection: Content-Length\r\nContent-Length: 60\r\n\r\n"
   "POST /capture HTTP/1.1\r\nHost: svc\r\nContent-Length: 80\r\n\r\n" + NEXT)
px("ws-before-colon-te", 0, "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
px("ws-before-colon-cl", 0, "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length : 5\r\n\r\nhello" + NEXT)
px("ws-before-colon-xff", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n")
px("space-in-field-name", 0, "GET / HTTP/1.1\r\nHost: svc\r\nContent Length: 3\r\n\r\n")
px("line-starting-with-space", 0, "GET / HTTP/1.1\r\n Host: evil\r\nHost: svc\r\n\r\n")
px("obs-fold-te", 0, "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n")
px("te-gzip-chunked", 0, "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
px("te-twice", 0, "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
   "0\r\n\r\n")
px("nul-in-value", 0, b"GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\x00b\r\n\r\n")
px("nul-in-name", 0, b"GET / HTTP/1.1\r\nHost: svc\r\nX\x00A: a\r\n\r\n")
px("backend-nul-in-value", 0, GET, b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n")
px("bare-lf-lines", 0, "GET /lf HTTP/1.1\nHost: svc\nX-A: a\n\n")
px("bare-cr-in-value", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\rb\r\n\r\n")
px("two-hosts", 0, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
px("no-host-http11", 0, "GET / HTTP/1.1\r\n\r\n")
px("host-userinfo", 0, "GET / HTTP/1.1\r\nHost: u@svc\r\n\r\n")
px("tab-in-target", 0, "GET /a\tb HTTP/1.1\r\nHost: svc\r\n\r\n")
px("http20-version", 0, "GET / HTTP/2.0\r\nHost: svc\r\n\r\n")
px("absolute-form-other-host", 0, "GET http://other.example/abs?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
px("absolute-form-port-no-path", 0, "GET http://other.example:8080 HTTP/1.1\r\nHost: a\r\n\r\n")
px("absolute-form-userinfo", 0, "GET http://u:p@other.example/ HTTP/1.1\r\nHost: a\r\n\r\n")
px("absolute-form-ftp", 0, "GET ftp://other.example/ HTTP/1.1\r\nHost: a\r\n\r\n")
px("xff-several", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\n\r\n")
px("xfp-xfh-from-client", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n")
px("request-id-twice", 0, "GET / HTTP/1.1\r\nHost: svc\r\nX-Request-Id: one\r\nX-Request-Id: two\r\n\r\n")
GET2 = GET * 2
px("backend-connection-content-length", 0, GET2,
   "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
px("backend-connection-transfer-encoding", 0, GET2,
   "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
px("backend-ws-before-colon", 0, GET2, "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello")
px("backend-obs-fold", 0, GET2, "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello")
px("backend-te-gzip", 0, GET2, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello")
px("backend-te-twice", 0, GET2,
   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
px("backend-204-with-body-pipelined", 0, GET2, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello")
px("backend-304-with-length", 0, GET2, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
px("head-with-chunked-answer", 0, "HEAD / HTTP/1.1\r\nHost: svc\r\n\r\n" + GET,
   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
px("empty-client", 0, "")
px("empty-client-half-close", HALF_CLOSE, "")
