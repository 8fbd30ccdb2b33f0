#!/usr/bin/env python3
"""Bad input, table-driven, over every route that takes a JSON body (POST/PATCH: images,
versions, revocation, services, rollouts, rollback, tokens): malformed
JSON, non-objects, wrong types, unknown and missing fields, out-of-range integers, invalid
names, oversized bodies, wrong Content-Type, invalid UTF-8. Each must get its documented
4xx status and code in the JSON error envelope, with request_id equal to X-Request-Id, and
the database and blob directory must be exactly as before the whole matrix. Also: unknown
routes (404), wrong methods (405 with Allow), bodies where none is taken, bad queries, bad
Idempotency-Keys, and the caller's own X-Request-Id. Request heads: over max_header_size or
with more than 100 fields, 431 headers-too-large in the envelope; far over (past the
connection's memory), libmicrohttpd's own 431 (or 414 for the request line)."""
import json

from aviarytest import (Daemon, check_error, chunked, create_service, diag, is_, main, ok, push_version,
                        random_bytes, raw_request, snapshot_diff, upload)

JSON = {"Content-Type": "application/json"}
KiB = 1024

# The routes with a JSON body: path, a valid body to derive cases from, the body limit
# (docs/configuration.md: 4 KiB images, revocation, rollback and tokens, 16 KiB services, 64 KiB
# versions and rollouts).
# Every case below is a refusal: none may change anything.
ROUTES = {
    "image.create": ("POST", "/v1/images", {"name": "fresh"}, 4 * KiB),
    "version.create": ("POST", "/v1/images/web/versions", None, 64 * KiB),  # base set once the kernel exists
    "version.revoke": ("POST", "/v1/images/web/versions/1.0.0/revoke", {"reason": "why"}, 4 * KiB),
    "service.create": ("POST", "/v1/services", {"name": "fresh"}, 16 * KiB),
    "service.update": ("PATCH", "/v1/services/svc", {"replicas": 2}, 16 * KiB),
    "rollout.create": ("POST", "/v1/services/svc/rollouts", {"version": "web:2.0.0"}, 64 * KiB),
    "rollout.rollback": ("POST", "/v1/services/svc/rollback", {"version": "web:2.0.0"}, 4 * KiB),
    "token.create": ("POST", "/v1/tokens", {"scope": "read", "name": "fresh"}, 4 * KiB),
}


class Case:
    def __init__(self, desc, method, path, body, status, codes, headers=None, allow=None):
        self.desc, self.method, self.path, self.body = desc, method, path, body
        self.status = status
        self.codes = {codes} if isinstance(codes, str) else set(codes)
        self.headers = dict(JSON if body is not None else {}, **(headers or {}))
        self.allow = allow


def enc(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def generic_cases(route, method, path, base, limit):
    """The cases every JSON route shares."""
    out = []

    def add(desc, body, status, codes, headers=None):
        out.append(Case(f"{route}: {desc}", method, path, body, status, codes, headers))

    for text in (b'{"name": ', b"{'name': 'x'}", b'{"a": 1} trailing', b'{"a": 1,}', b"{", b"nul",
                 b'\xef\xbb\xbf{"reason": "bom"}', b'{"a": tru}'):
        add(f"malformed JSON {text[:16]!r}", text, 400, "malformed-json")
    for text in (b"[]", b'"string"', b"42", b"null", b"true", b'[{"name": "x"}]'):
        add(f"non-object JSON {text!r}", text, 400, "malformed-json")
    add("duplicate keys", b'{"reason": "a", "reason": "b", "name": "a", "name": "b"}', 400, "malformed-json")
    for text in (b'{"name": "\xff"}', b'{"name": "\xc0\xaf"}', b'{"name": "\xed\xa0\x80"}', b'{"\xfe": 1}',
                 b'{"name": "\xe2\x82"}', b'{"name": "\xe0\x80\xaf"}', b'{"name": "\xf4\x90\x80\x80"}',
                 b'{"a": {"b": ["\x80"]}}'):
        add(f"invalid UTF-8 {text!r}", text, 400, "malformed-json")
    add("an unpaired surrogate escape", b'{"name": "\\ud800"}', 400, "malformed-json")
    add("duplicate keys in a nested object", b'{"a": {"k": 1, "k": 2}}', 400, "malformed-json")

    # Nesting: JSON_MAX_DEPTH (32) levels, the top object included, are judged on their
    # content; one more is refused before any handler runs, however the rest looks.
    def nested(levels):
        return enc(dict(base, pad=None)).replace(b"null", b"[" * (levels - 1) + b"]" * (levels - 1))

    add("nested 32 levels deep is read (unknown field)", nested(32), 422, "unknown-field")
    add("nested 33 levels deep", nested(33), 400, "malformed-json")
    add("nested 1000 levels deep", nested(1000), 400, "malformed-json")
    add("nested 33 levels and malformed after", nested(33)[:-1], 400, "malformed-json")
    if route not in ("version.revoke", "rollout.rollback"):  # these take an empty body
        add("empty body", b"", 400, "malformed-json")
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/json-patch+json",
                  "application/jsonx", None):
        add(f"Content-Type {ctype}", enc(base), 415, "unsupported-media-type", {"Content-Type": ctype})
    add("unknown field", enc(dict(base, bogus=1)), 422, "unknown-field")
    add("unknown field only", enc({"zzz": None}), 422, "unknown-field")

    # Over the limit: refused from Content-Length alone, and when chunked, once read.
    big = enc(dict(base, pad=""))
    big = big[:-2] + b"x" * (limit + 1 - len(big)) + big[-2:]
    assert len(big) == limit + 1
    add(f"body of {limit + 1} bytes (limit {limit})", big, 413, "payload-too-large")
    add(f"chunked body of {limit + 1} bytes", chunked(big), 413, "payload-too-large",
        {"Transfer-Encoding": "chunked", "Content-Length": None})
    # Exactly at the limit is read and judged on its content (here: an unknown field).
    at = enc(dict(base, pad=""))
    at = at[:-2] + b"x" * (limit - len(at)) + at[-2:]
    add(f"body of exactly {limit} bytes is read (unknown field)", at, 422, "unknown-field")
    return out


def field_cases(route, method, path, base, changes):
    """BASE with each change applied (a value, or DELETE to drop the field)."""
    out = []
    for desc, change, status, codes in changes:
        body = dict(base)
        for k, v in change.items():
            if v is DELETE:
                body.pop(k, None)
            else:
                body[k] = v
        out.append(Case(f"{route}: {desc}", method, path, enc(body), status, codes))
    return out


DELETE = object()
INVALID = (422, "invalid-field")
UNKNOWN = (422, "unknown-field")
MISSING = (422, "missing-field")
NULL_REQUIRED = (422, ("missing-field", "invalid-field"))

BAD_NAMES = ["Web", "-web", "web-", "we_b", "web.1", "a" * 64, "", "wéb", " web", "web ", "we b", "we\u0000b",
             "web\n"]
BAD_TAGS = ["", ".1", "-1", "a/b", "a b", "a" * 129, "é", "1:0", "a\u0000"]
BAD_LABEL_KEYS = ["", "-k", ".k", "/k", "k k", "k" * 64, "é", "k=v"]
# Characters no string field may hold (docs/api.md, "Text").
BAD_TEXT = [("NUL", "\u0000"), ("a newline", "\n"), ("CR", "\r"), ("a tab", "\t"), ("ESC", "\u001b"),
            ("DEL", "\u007f"), ("U+0085", "\u0085"), ("U+009B", "\u009b"), ("U+2028", "\u2028"),
            ("U+202E", "\u202e"), ("U+FFFE", "\ufffe")]


def version_changes(kernel):
    ch = [
        ("missing version", {"version": DELETE}, *MISSING),
        ("missing kernel", {"kernel": DELETE}, *MISSING),
        ("version null", {"version": None}, *NULL_REQUIRED),
        ("version is a number", {"version": 1}, *INVALID),
        ("kernel is a number", {"kernel": 5}, *INVALID),
        ("kernel not a digest", {"kernel": "vmlinuz"}, *INVALID),
        ("kernel upper-case digest", {"kernel": kernel.upper().replace("SHA256", "sha256")}, *INVALID),
        ("kernel sha512", {"kernel": "sha512:" + "0" * 64}, *INVALID),
        ("initrd is a number", {"initrd": 5}, *INVALID),
        ("initrd not a digest", {"initrd": "sha256:xyz"}, *INVALID),
        ("cmdline is a number", {"cmdline": 5}, *INVALID),
        ("cmdline is a list", {"cmdline": ["a"]}, *INVALID),
        ("cmdline with a newline", {"cmdline": "a\nb"}, *INVALID),
        ("cmdline with a tab", {"cmdline": "a\tb"}, *INVALID),
        ("cmdline with DEL", {"cmdline": "a\u007fb"}, *INVALID),
        ("cmdline with NUL", {"cmdline": "a\u0000b"}, *INVALID),
        ("cmdline of 4097 bytes", {"cmdline": "x" * 4097}, *INVALID),
        ("memory_mib 15", {"memory_mib": 15}, *INVALID),
        ("memory_mib 65537", {"memory_mib": 65537}, *INVALID),
        ("memory_mib -1", {"memory_mib": -1}, *INVALID),
        ("memory_mib a string", {"memory_mib": "128"}, *INVALID),
        ("memory_mib a float", {"memory_mib": 128.0}, *INVALID),
        ("memory_mib a float 128.5", {"memory_mib": 128.5}, *INVALID),
        ("memory_mib a boolean", {"memory_mib": True}, *INVALID),
        ("memory_mib null", {"memory_mib": None}, *INVALID),
        ("memory_mib 2^63 (valid JSON, out of range)", {"memory_mib": 2 ** 63}, *INVALID),
        ("memory_mib -2^63-1 (valid JSON, out of range)", {"memory_mib": -(2 ** 63) - 1}, *INVALID),
        ("vcpus 0", {"vcpus": 0}, *INVALID),
        ("vcpus 65", {"vcpus": 65}, *INVALID),
        ("port 0", {"port": 0}, *INVALID),
        ("port 65536", {"port": 65536}, *INVALID),
        ("port a string", {"port": "80"}, *INVALID),
        ("labels a list", {"labels": ["a"]}, *INVALID),
        ("labels a string", {"labels": "a=b"}, *INVALID),
        ("label value a number", {"labels": {"k": 1}}, *INVALID),
        ("label value null", {"labels": {"k": None}}, *INVALID),
        ("label value of 257 bytes", {"labels": {"k": "v" * 257}}, *INVALID),
        ("label value of 129 two-byte characters", {"labels": {"k": "é" * 129}}, *INVALID),
        ("label value with a newline", {"labels": {"k": "a\nb"}}, *INVALID),
        # Labels are printable UTF-8 (docs/api.md, "Text"): a NUL was a 500 (issue 14, item 8),
        # C1 controls were stored (item 9).
        ("label value with NUL", {"labels": {"a": "x\u0000y"}}, *INVALID),
        ("label value with U+0085 (NEL)", {"labels": {"a": "x\u0085y"}}, *INVALID),
        ("label value with U+009B (CSI)", {"labels": {"a": "\u009b2J"}}, *INVALID),
        ("label value with U+2028", {"labels": {"a": "x\u2028y"}}, *INVALID),
        ("label value with U+202E", {"labels": {"a": "\u202egnp.exe"}}, *INVALID),
        ("label value with U+FEFF", {"labels": {"a": "\ufeffx"}}, *INVALID),
        ("label value with ESC", {"labels": {"a": "\u001b[2J"}}, *INVALID),
        ("label value with DEL", {"labels": {"a": "x\u007f"}}, *INVALID),
        ("65 labels", {"labels": {f"k{i}": "v" for i in range(65)}}, *INVALID),
        ("state given", {"state": "revoked"}, *UNKNOWN),
        ("digest given", {"digest": "sha256:" + "0" * 64}, *UNKNOWN),
        ("image given", {"image": "web"}, *UNKNOWN),
    ]
    ch += [(f"version tag {t!r}", {"version": t}, *INVALID) for t in BAD_TAGS]
    ch += [(f"label key {k!r}", {"labels": {k: "v"}}, *INVALID) for k in BAD_LABEL_KEYS]
    # jansson cannot hold a NUL inside an object key: such a body is refused as malformed
    # (docs/api.md), still with nothing changed.
    ch += [("label key with NUL", {"labels": {"k\u0000": "v"}}, 400, ("malformed-json",))]
    return ch


def service_changes(creating):
    ch = [
        ("listen is a number", {"listen": 8080}, *INVALID),
        ("replicas -1", {"replicas": -1}, *INVALID),
        ("replicas 65", {"replicas": 65}, *INVALID),
        ("replicas 1.5", {"replicas": 1.5}, *INVALID),
        ("replicas a string", {"replicas": "2"}, *INVALID),
        ("replicas null", {"replicas": None}, *INVALID),
        ("port 0", {"port": 0}, *INVALID),
        ("port 65536", {"port": 65536}, *INVALID),
        ("port a string", {"port": "80"}, *INVALID),
        ("restart_policy unknown", {"restart_policy": "sometimes"}, *INVALID),
        ("restart_policy empty", {"restart_policy": ""}, *INVALID),
        ("restart_policy upper-case", {"restart_policy": "Always"}, *INVALID),
        ("restart_policy a number", {"restart_policy": 1}, *INVALID),
        ("stable_version without tag", {"stable_version": "web"}, *INVALID),
        ("stable_version empty tag", {"stable_version": "web:"}, *INVALID),
        ("stable_version bad image name", {"stable_version": "Web:1.0.0"}, *INVALID),
        ("stable_version bad digest", {"stable_version": "web@sha256:xyz"}, *INVALID),
        ("stable_version a number", {"stable_version": 5}, *INVALID),
        ("stable_version unknown tag", {"stable_version": "web:9.9.9"}, 404, "version-not-found"),
        ("stable_version unknown image", {"stable_version": "nosuch:1"}, 404, "version-not-found"),
        ("stable_version unknown digest", {"stable_version": "web@sha256:" + "0" * 64}, 404, "version-not-found"),
        ("health_check a list", {"health_check": []}, *INVALID),
        ("health_check a string", {"health_check": "/"}, *INVALID),
        ("health_check.path without /", {"health_check": {"path": "health"}}, *INVALID),
        ("health_check.path with a space", {"health_check": {"path": "/a b"}}, *INVALID),
        ("health_check.path with U+0085", {"health_check": {"path": "/a\u0085"}}, *INVALID),
        ("stable_version with a newline", {"stable_version": "web:1.0.0\n"}, *INVALID),
        ("restart_policy with ESC", {"restart_policy": "always\u001b"}, *INVALID),
        ("health_check.path a number", {"health_check": {"path": 1}}, *INVALID),
        ("health_check.interval without unit", {"health_check": {"interval": "2"}}, *INVALID),
        ("health_check.interval fractional", {"health_check": {"interval": "1.5s"}}, *INVALID),
        ("health_check.interval negative", {"health_check": {"interval": "-1s"}}, *INVALID),
        ("health_check.interval 50ms", {"health_check": {"interval": "50ms"}}, *INVALID),
        ("health_check.interval 2h", {"health_check": {"interval": "2h"}}, *INVALID),
        ("health_check.interval a number", {"health_check": {"interval": 2}}, *INVALID),
        ("health_check.interval unknown unit", {"health_check": {"interval": "2d"}}, *INVALID),
        ("health_check.timeout over the interval", {"health_check": {"interval": "1s", "timeout": "2s"}}, *INVALID),
        ("health_check.rise 0", {"health_check": {"rise": 0}}, *INVALID),
        ("health_check.fall 11", {"health_check": {"fall": 11}}, *INVALID),
        ("health_check unknown field", {"health_check": {"method": "GET"}}, *UNKNOWN),
        ("generation given", {"generation": 7}, *UNKNOWN),
        ("stable_digest given", {"stable_digest": "sha256:" + "0" * 64}, *UNKNOWN),
    ]
    for listen in ("127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "localhost:80", "[::1]80",
                   "::1:80", "1.2.3.4.5:80", "127.0.0.1:80x", "[::1]:", "127.0.0.01:80", "[127.0.0.1]:80",
                   "", ":80"):
        ch.append((f"listen {listen!r}", {"listen": listen}, *INVALID))
    if creating:
        ch += [("missing name", {"name": DELETE}, *MISSING), ("name null", {"name": None}, *NULL_REQUIRED),
               ("name a number", {"name": 1}, *INVALID)]
        ch += [(f"service name {n!r}", {"name": n}, *INVALID) for n in BAD_NAMES]
    else:
        ch += [("name in PATCH", {"name": "other"}, *UNKNOWN)]
    return ch


def rollout_changes():
    steps = lambda *st: {"strategy": {"canary": {"steps": list(st)}}}  # noqa: E731
    canary = lambda **kw: {"strategy": {"canary": kw}}  # noqa: E731
    # svc listens on 127.0.0.1:18081, other on :18082 (body()).
    bg = lambda **kw: {"strategy": {"blueGreen": dict({"previewListen": "127.0.0.1:18089"}, **kw)}}  # noqa: E731
    return [
        ("missing version", {"version": DELETE}, *MISSING),
        ("version null", {"version": None}, *NULL_REQUIRED),
        ("version a number", {"version": 2}, *INVALID),
        ("version without tag", {"version": "web"}, *INVALID),
        ("version bad image name", {"version": "Web:2.0.0"}, *INVALID),
        ("version with a newline", {"version": "web:2.0.0\n"}, *INVALID),
        ("version bad digest", {"version": "web@sha256:xyz"}, *INVALID),
        ("version unknown tag", {"version": "web:9.9.9"}, 404, "version-not-found"),
        ("version unknown image", {"version": "nosuch:1"}, 404, "version-not-found"),
        ("version the stable one", {"version": "web:1.0.0"}, 409, "rollout-state"),
        ("version revoked", {"version": "web:3.0.0"}, 409, "version-revoked"),
        ("strategy a string", {"strategy": "AllAtOnce"}, *INVALID),
        ("strategy a list", {"strategy": []}, *INVALID),
        ("strategy unknown field", {"strategy": {"blue": 1}}, *UNKNOWN),
        ("strategy.preset unknown", {"strategy": {"preset": "Nope"}}, *INVALID),
        ("strategy.preset and steps", {"strategy": {"preset": "AllAtOnce", "canary": {"steps": [{"setWeight": 5}]}}},
         *INVALID),
        ("canary a list", {"strategy": {"canary": []}}, *INVALID),
        ("canary unknown field", {"strategy": {"canary": {"bogus": 1}}}, *UNKNOWN),
        ("steps empty", steps(), *INVALID),
        ("steps an object", {"strategy": {"canary": {"steps": {}}}}, *INVALID),
        ("step a number", steps(5), *INVALID),
        ("step empty", steps({}), *INVALID),
        ("step with two kinds", steps({"setWeight": 10, "pause": {}}), *INVALID),
        ("setWeight 101", steps({"setWeight": 101}), *INVALID),
        ("setWeight -1", steps({"setWeight": -1}), *INVALID),
        ("setWeight a string", steps({"setWeight": "10"}), *INVALID),
        ("setWeight with 3 decimals", steps({"setWeight": 12.345}), *INVALID),
        ("pause a number", steps({"pause": 5}), *INVALID),
        ("pause duration 0s", steps({"pause": {"duration": "0s"}}), *INVALID),
        ("pause duration in words", steps({"pause": {"duration": "5 minutes"}}), *INVALID),
        ("pause unknown field", steps({"pause": {"for": "1m"}}), *UNKNOWN),
        ("65 steps", steps(*[{"pause": {}}] * 65), *INVALID),
        ("mirror a number", steps({"mirror": 100}), *INVALID),
        ("mirror without percent", steps({"mirror": {"duration": "2m"}}), *MISSING),
        ("mirror without duration", steps({"mirror": {"percent": 100}}), *MISSING),
        ("mirror percent 0", steps({"mirror": {"percent": 0, "duration": "2m"}}), *INVALID),
        ("mirror percent 101", steps({"mirror": {"percent": 101, "duration": "2m"}}), *INVALID),
        ("mirror percent a string", steps({"mirror": {"percent": "50", "duration": "2m"}}), *INVALID),
        ("mirror duration 0s", steps({"mirror": {"percent": 50, "duration": "0s"}}), *INVALID),
        ("mirror duration over 24h", steps({"mirror": {"percent": 50, "duration": "25h"}}), *INVALID),
        ("mirror unknown field", steps({"mirror": {"percent": 50, "duration": "1m", "methods": ["POST"]}}), *UNKNOWN),
        ("canaryReplicas -1", canary(canaryReplicas=-1), *INVALID),
        ("canaryReplicas a string", canary(canaryReplicas="1"), *INVALID),
        ("progressDeadline a number", canary(progressDeadline=600), *INVALID),
        ("progressDeadline in words", canary(progressDeadline="soon"), *INVALID),
        ("scaleDownDelay negative", canary(scaleDownDelay="-1s"), *INVALID),
        ("abortScaleDownDelay a list", canary(abortScaleDownDelay=["1m"]), *INVALID),
        ("testerHeader a string", canary(testerHeader="yes"), *INVALID),
        ("stickiness a string", canary(stickiness="cookie"), *INVALID),
        ("stickiness unknown field", canary(stickiness={"ip": True}), *UNKNOWN),
        ("analysis a list", canary(analysis=[]), *INVALID),
        ("analysis.interval in words", canary(analysis={"interval": "often"}), *INVALID),
        ("analysis.minSampleSize -1", canary(analysis={"minSampleSize": -1}), *INVALID),
        ("analysis.successRate.min 2", canary(analysis={"successRate": {"min": 2}}), *INVALID),
        ("analysis.latencyP99 unknown field", canary(analysis={"latencyP99": {"p50": 1}}), *UNKNOWN),
        ("analysis unknown field", canary(analysis={"metric": "x"}), *UNKNOWN),
        ("blueGreen a list", {"strategy": {"blueGreen": []}}, *INVALID),
        ("blueGreen and preset", {"strategy": {"blueGreen": {}, "preset": "AllAtOnce"}}, *INVALID),
        ("blueGreen and canary", {"strategy": {"blueGreen": {}, "canary": {"scaleDownDelay": "1m"}}}, *INVALID),
        ("blueGreen unknown field", bg(canaryReplicas=2), *UNKNOWN),
        ("blueGreen.previewListen a hostname", bg(previewListen="localhost:8081"), *INVALID),
        ("blueGreen.previewListen port 0", bg(previewListen="127.0.0.1:0"), *INVALID),
        ("blueGreen.previewListen without a port", bg(previewListen="127.0.0.1"), *INVALID),
        ("blueGreen.previewListen a number", bg(previewListen=8081), *INVALID),
        ("blueGreen.previewListen the service's own", bg(previewListen="127.0.0.1:18081"), *INVALID),
        ("blueGreen.previewListen another service's", bg(previewListen="127.0.0.1:18082"), 409, "listen-in-use"),
        ("blueGreen without previewListen: the next port is another service's",
         {"strategy": {"blueGreen": {}}}, 409, "listen-in-use"),
        ("blueGreen.autoPromote a string", bg(autoPromote="yes"), *INVALID),
        ("blueGreen.scaleDownDelay in words", bg(scaleDownDelay="a while"), *INVALID),
        ("blueGreen.prePromotion an object", bg(prePromotion={}), *INVALID),
        ("blueGreen.prePromotion setWeight", bg(prePromotion=[{"setWeight": 50}]), *INVALID),
        ("blueGreen.prePromotion setHeaderRoute", bg(prePromotion=[{"setHeaderRoute": {"match": []}}]), *INVALID),
        ("blueGreen.prePromotion a bad check", bg(prePromotion=[{"check": {}}]), *INVALID),
        ("id given", {"id": 7}, *UNKNOWN),
        ("phase given", {"phase": "Healthy"}, *UNKNOWN),
    ]


def token_changes():
    ch = [
        ("missing scope", {"scope": DELETE}, *MISSING),
        ("scope null", {"scope": None}, *NULL_REQUIRED),
        ("scope unknown", {"scope": "root"}, *INVALID),
        ("scope upper-case", {"scope": "Admin"}, *INVALID),
        ("scope empty", {"scope": ""}, *INVALID),
        ("scope a number", {"scope": 3}, *INVALID),
        ("scope a list", {"scope": ["read"]}, *INVALID),
        ("name a number", {"name": 1}, *INVALID),
        ("name reserved: bootstrap", {"name": "bootstrap"}, *INVALID),
        ("name reserved: aviaryd", {"name": "aviaryd"}, *INVALID),
        ("name of a token that exists", {"name": "existing"}, 409, "token-exists"),
        ("token given", {"token": "avy_" + "0" * 64}, *UNKNOWN),
        ("prefix given", {"prefix": "avy_00000000"}, *UNKNOWN),
    ]
    ch += [(f"token name {n!r}", {"name": n}, *INVALID) for n in BAD_NAMES]
    return ch


def build_matrix(kernel):
    ROUTES["version.create"] = ("POST", "/v1/images/web/versions", {"version": "9.9", "kernel": kernel}, 64 * KiB)
    cases = []
    for route, (method, path, base, limit) in ROUTES.items():
        cases += generic_cases(route, method, path, base, limit)

    m, p, base, _ = ROUTES["image.create"]
    cases += field_cases("image.create", m, p, base,
                         [("missing name", {"name": DELETE}, *MISSING), ("name null", {"name": None}, *NULL_REQUIRED),
                          ("name a number", {"name": 5}, *INVALID), ("name a list", {"name": ["a"]}, *INVALID)]
                         + [(f"image name {n!r}", {"name": n}, *INVALID) for n in BAD_NAMES])
    cases.append(Case("image.create: an image that exists", m, p, enc({"name": "web"}), 409, "image-exists"))

    m, p, base, _ = ROUTES["version.create"]
    cases += field_cases("version.create", m, p, base, version_changes(kernel))
    for name in ("Web", "-web", "we_b", "a" * 64, "web.1"):
        cases.append(Case(f"version.create: image name {name!r} in the path", m, f"/v1/images/{name}/versions",
                          enc(base), 400, "invalid-name"))

    m, p, base, _ = ROUTES["version.revoke"]
    cases += field_cases("version.revoke", m, p, base,
                         [("reason a number", {"reason": 5}, *INVALID),
                          ("reason an object", {"reason": {}}, *INVALID),
                          ("reason of 1025 bytes", {"reason": "r" * 1025}, *INVALID)]
                         + [(f"reason with {what}", {"reason": f"a{ch}b"}, *INVALID) for what, ch in BAD_TEXT])
    for ref, status, code in (("Web/versions/1.0.0", 400, "invalid-name"), ("web/versions/.1", 400, "invalid-name"),
                              ("web/versions/sha256:xyz", 400, "invalid-name"),
                              ("web/versions/9.9.9", 404, "version-not-found"),
                              ("nosuch/versions/1.0.0", 404, "version-not-found")):
        cases.append(Case(f"version.revoke: /v1/images/{ref}/revoke", m, f"/v1/images/{ref}/revoke", enc(base),
                          status, code))

    m, p, base, _ = ROUTES["service.create"]
    cases += field_cases("service.create", m, p, base, service_changes(True))
    cases.append(Case("service.create: a service that exists", m, p, enc({"name": "svc"}), 409, "service-exists"))
    cases.append(Case("service.create: a listen address in use", m, p,
                      enc({"name": "fresh", "listen": "127.0.0.1:18080"}), 409, "listen-in-use"))

    m, p, base, _ = ROUTES["service.update"]
    cases += field_cases("service.update", m, p, base, service_changes(False))
    for name, status, code in (("Svc", 400, "invalid-name"), ("s_v", 400, "invalid-name"),
                               ("nosuch", 404, "service-not-found")):
        cases.append(Case(f"service.update: /v1/services/{name}", m, f"/v1/services/{name}", enc(base), status, code))
    cases.append(Case("service.update: stale If-Match", m, p, enc(base), 412, "precondition-failed",
                      {"If-Match": '"999"'}))
    cases.append(Case("service.update: another's listen address", m, "/v1/services/other",
                      enc({"listen": "127.0.0.1:18080"}), 409, "listen-in-use"))

    m, p, base, _ = ROUTES["rollout.create"]
    cases += field_cases("rollout.create", m, p, base, rollout_changes())
    for name, status, code in (("Svc", 400, "invalid-name"), ("s_v", 400, "invalid-name"),
                               ("nosuch", 404, "service-not-found")):
        cases.append(Case(f"rollout.create: /v1/services/{name}/rollouts", m, f"/v1/services/{name}/rollouts",
                          enc(base), status, code))

    m, p, base, _ = ROUTES["rollout.rollback"]
    cases += field_cases("rollout.rollback", m, p, base, [
        ("version null", {"version": None}, *INVALID),
        ("version a number", {"version": 2}, *INVALID),
        ("version a list", {"version": ["web:2.0.0"]}, *INVALID),
        ("version without tag", {"version": "web"}, *INVALID),
        ("version bad image name", {"version": "Web:2.0.0"}, *INVALID),
        ("version of 257 bytes", {"version": "web:" + "1" * 253}, *INVALID),
        ("version unknown tag", {"version": "web:9.9.9"}, 404, "version-not-found"),
        ("version the stable one", {"version": "web:1.0.0"}, 409, "rollout-state"),
        ("version revoked", {"version": "web:3.0.0"}, 409, "version-revoked"),
        ("strategy given", {"strategy": {"preset": "AllAtOnce"}}, *UNKNOWN),
    ])
    cases.append(Case("rollout.rollback: no body, and no rollout brought svc's stable version", m, p, None, 409,
                      "rollout-state"))
    for name, status, code in (("Svc", 400, "invalid-name"), ("nosuch", 404, "service-not-found"),
                               ("other", 409, "rollout-state")):
        cases.append(Case(f"rollout.rollback: /v1/services/{name}/rollback", m, f"/v1/services/{name}/rollback",
                          enc(base if name != "other" else {}), status, code))

    m, p, base, _ = ROUTES["token.create"]
    cases += field_cases("token.create", m, p, base, token_changes())

    # Routes that take no body refuse one, and change nothing: the rollout actions, the instance
    # restart and a service's sleep and wake among them.
    actions = [("POST", f"/v1/services/svc/rollouts/current/{a}") for a in ("promote", "pause", "resume", "abort",
                                                                           "retry")]
    for method, path in [("GET", "/v1/health"), ("DELETE", "/v1/services/svc"), ("DELETE", "/v1/images/web"),
                         ("DELETE", "/v1/images/web/versions/1.0.0"), ("GET", "/v1/events"),
                         ("DELETE", "/v1/tokens/existing"), ("POST", "/v1/instances/svc-00000000/restart"),
                         ("POST", "/v1/services/svc/sleep"), ("POST", "/v1/services/svc/wake")] + actions:
        cases.append(Case(f"{method} {path} with a body", method, path, b'{"a": 1}', 400, "bad-request"))

    # Idempotency-Key must be 1-255 printable ASCII: a valid request with a bad key is refused.
    for key in ("a b", "k" * 256, "", "ключ", "tab\there"):
        cases.append(Case(f"image.create with Idempotency-Key {key[:12]!r}", "POST", "/v1/images",
                          enc({"name": "keyed"}), 400, "bad-request", {"Idempotency-Key": key}))
    return cases


def routing_cases():
    cases = []
    for path in ("/v1/nope", "/v2/health", "/", "/v1", "/v1/images/", "/v1/images/web/versions/1.0.0/revoke/x",
                 "/v1/images/web/tags", "/v1//images", "/V1/health", "/v1/health/"):
        cases.append(Case(f"GET {path}: 404 not-found", "GET", path, None, 404, "not-found"))
    cases.append(Case("POST to an unknown route: 404 not-found", "POST", "/v1/nope", enc({}), 404, "not-found"))
    # An encoded slash is no path separator (issue 14, item 10): DELETE of
    # /v1/images/web%2Fversions%2F1.0.0 deleted version web:1.0.0.
    for path in ("/v1/services%2Fsvc", "/v1/services%2fsvc", "/v1%2Fhealth", "/v1/images%2Fweb%2Fversions"):
        cases.append(Case(f"GET {path}: 404 not-found", "GET", path, None, 404, "not-found"))
    for method, path in (("DELETE", "/v1/images/web%2Fversions%2F1.0.0"), ("GET", "/v1/images/web%2Fversions"),
                         ("DELETE", "/v1/services/svc%2F"), ("GET", "/v1/images/web/versions/1.0.0%2Frevoke")):
        cases.append(Case(f"{method} {path}: 400 invalid-name", method, path, None, 400, "invalid-name"))
    for method, path, allow in (("DELETE", "/v1/events", "GET HEAD"), ("POST", "/v1/health", "GET HEAD"),
                                ("PUT", "/v1/services", "GET HEAD POST"),
                                ("PATCH", "/v1/images/web", "GET HEAD DELETE"),
                                ("DELETE", "/v1/images/web/versions", "GET HEAD POST"),
                                ("POST", "/v1/blobs/sha256:" + "0" * 64, "GET HEAD PUT DELETE"),
                                ("GET", "/v1/images/web/versions/1.0.0/revoke", "POST"),
                                ("PUT", "/v1/services/svc", "GET HEAD PATCH DELETE"),
                                ("OPTIONS", "/v1/services", "GET HEAD POST"),
                                ("DELETE", "/v1/blobs", "GET HEAD")):
        cases.append(Case(f"{method} {path[:40]}: 405 method-not-allowed", method, path, None, 405,
                          "method-not-allowed", allow=set(allow.split())))
    for q in ("limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=", "limit=1.5"):
        for path in ("/v1/services", "/v1/images", "/v1/blobs", "/v1/events"):
            cases.append(Case(f"GET {path}?{q}: 400 invalid-query", "GET", f"{path}?{q}", None, 400, "invalid-query"))
    for q in ("after=abc", "after=-1", "after=5x", "after="):
        cases.append(Case(f"GET /v1/events?{q}: 400 invalid-query", "GET", f"/v1/events?{q}", None, 400,
                          "invalid-query"))
    return cases


def run(d, case, n):
    """Runs CASE, half of them with the caller's own X-Request-Id."""
    headers = dict(case.headers)
    rid = None
    if n % 2 == 0:
        rid = f"bad-input-{n}"
        headers["X-Request-Id"] = rid
    try:
        r = raw_request(d.socket_path, case.method, case.path, headers, case.body)
    except OSError as e:
        r = None
        ok(False, f"{case.desc}: the daemon can be reached", repr(e))
    if r is None or r.status == 0:
        try:
            d.proc.wait(timeout=2)  # no answer: is it dying?
        except Exception:
            pass
    if not d.running() or r is None:
        # A crash is a failure of its own; start again so the rest of the matrix still runs.
        ok(False, f"{case.desc}: the daemon survived the request", f"exit status {d.proc.poll()}",
           "log tail:\n" + "\n".join(d.log().splitlines()[-3:]))
        d.kill()
        d.start()
        return
    code = r.error_code()
    want_code = code if code in case.codes else sorted(case.codes)[0]
    check_error(r, case.status, want_code, case.desc, request_id=rid)
    if case.allow is not None:
        got = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
        is_(got, case.allow, f"{case.desc}: Allow lists {' '.join(sorted(case.allow))}")


def body():
    with Daemon() as d:
        c = d.client
        kernel = upload(c, random_bytes(4096)[0])
        push_version(c, "web", "1.0.0", kernel=kernel, port=8080)
        create_service(c, "svc", stable_version="web:1.0.0", listen="127.0.0.1:18081")
        create_service(c, "other", listen="127.0.0.1:18082")
        create_service(c, "holder", listen="127.0.0.1:18080")
        push_version(c, "web", "2.0.0", kernel=kernel, port=8080)
        push_version(c, "web", "3.0.0", kernel=kernel, port=8080)
        is_(c.post("/v1/images/web/versions/3.0.0/revoke", {"reason": "bad"}).status, 200, "web:3.0.0 is revoked")
        is_(c.post("/v1/tokens", {"scope": "read", "name": "existing"}).status, 201, "a token named existing")

        snap, files = d.snapshot(), d.blob_files()
        cases = build_matrix(kernel) + routing_cases()
        diag(f"{len(cases)} cases")
        for n, case in enumerate(cases):
            run(d, case, n)

        ok(d.snapshot() == snap, "the database is exactly as before the whole matrix",
           lambda: snapshot_diff(snap, d.snapshot()))
        is_(d.blob_files(), files, "the blob directory is exactly as before")
        ok(d.running(), "the daemon is still running", lambda: d.log()[-3000:])

        # A path parameter is the whole segment: a percent-encoded NUL must not cut a name
        # short and make the request act on another resource ("bare%00x" is not "bare").
        c.post("/v1/images", {"name": "bare"})
        snap = d.snapshot()
        for method, path in (("GET", "/v1/images/bare%00x"), ("DELETE", "/v1/images/bare%00x"),
                             ("GET", "/v1/services/svc%00x"), ("DELETE", "/v1/services/svc%00x"),
                             ("PATCH", "/v1/services/svc%00x"), ("GET", "/v1/images/web/versions/1.0.0%00x"),
                             ("DELETE", "/v1/images/web%00x/versions/1.0.0"),
                             ("POST", "/v1/images/web/versions/1.0.0%00x/revoke")):
            body = b'{"replicas": 3}' if method in ("PATCH", "POST") else None
            r = raw_request(d.socket_path, method, path, JSON if body else {}, body)
            ok(r.status == 400 and r.error_code() == "invalid-name" or r.status == 404,
               f"{method} {path}: refused as an invalid name (400) or unknown (404), not done on the name "
               f"before the NUL", repr(r))
        ok(d.snapshot() == snap, "requests with a NUL in a path parameter changed nothing",
           lambda: snapshot_diff(snap, d.snapshot()))

        # X-Request-Id: the caller's own when it is 1-64 printable ASCII characters.
        for rid in ("x", "r" * 40, "r" * 64, "req-ABC_123.~!@"):
            r = c.get("/v1/nope", headers={"X-Request-Id": rid})
            check_error(r, 404, "not-found", f"a {len(rid)}-character X-Request-Id is echoed whole", request_id=rid)
            is_(c.get("/v1/health", headers={"X-Request-Id": rid}).header("X-Request-Id"), rid,
                f"a successful answer echoes the {len(rid)}-character X-Request-Id too")
        for rid in ("r" * 65, "has space", "tab\tx"):
            r = c.get("/v1/nope", headers={"X-Request-Id": rid})
            got = r.header("X-Request-Id")
            ok(got and got != rid and r.error_code() == "not-found" and r.json["error"]["request_id"] == got,
               f"an X-Request-Id {rid[:12]!r}... that is not 1-64 printable ASCII is replaced by one of ours",
               repr(r))
        ids = {c.get("/v1/health").header("X-Request-Id") for _ in range(5)}
        is_(len(ids), 5, "request ids of our own differ from request to request")

        test_header_limits(d)
    with Daemon(config={"max_header_size": "4K"}) as small:
        r = raw_request(small.socket_path, "GET", "/v1/health", {"X-Pad": "p" * 3500}, None)
        is_(r.status, 200, "max_header_size = 4K: a head of about 3.5 KiB is served", repr(r))
        r = raw_request(small.socket_path, "GET", "/v1/health", {"X-Pad": "p" * 4200}, None)
        check_error(r, 431, "headers-too-large", "max_header_size = 4K: a head of about 4.2 KiB is 431")


def head_size(method, path, headers):
    """The request head's size as the daemon counts it: request line, fields, CRLFs."""
    hdrs = dict({"Host": "aviary"}, **headers)
    return len(f"{method} {path} HTTP/1.1\r\n") + sum(len(f"{k}: {v}\r\n") for k, v in hdrs.items()) + 2


def test_header_limits(d):
    """max_header_size is 16 KiB by default; the connection's memory is twice that plus 16 KiB."""
    limit = 16 * KiB
    snap, files = d.snapshot(), d.blob_files()
    pad = limit - head_size("GET", "/v1/health", {"X-Pad": ""})
    r = raw_request(d.socket_path, "GET", "/v1/health", {"X-Pad": "p" * pad}, None)
    is_(r.status, 200, f"a head of exactly {limit} bytes is served", repr(r))
    r = raw_request(d.socket_path, "GET", "/v1/health", {"X-Pad": "p" * (pad + 1), "X-Request-Id": "big-head"}, None)
    check_error(r, 431, "headers-too-large", f"a head of {limit + 1} bytes: 431 headers-too-large",
                request_id="big-head")
    r = raw_request(d.socket_path, "GET", "/v1/health", {"X-Pad": "p" * (2 * limit)}, None)
    check_error(r, 431, "headers-too-large", "a head of 32 KiB, still within the connection's memory: 431 in JSON")
    fields = {f"X-F{i}": "v" for i in range(99)}
    is_(raw_request(d.socket_path, "GET", "/v1/health", fields, None).status, 200,
        "100 header fields (Host and 99 more) are served")
    r = raw_request(d.socket_path, "GET", "/v1/health", dict(fields, **{"X-F99": "v"}), None)
    check_error(r, 431, "headers-too-large", "101 header fields: 431 headers-too-large")
    r = raw_request(d.socket_path, "GET", "/v1/health?q=" + "q" * limit, {}, None)
    check_error(r, 431, "headers-too-large", "a request line of 16 KiB counts too: 431")
    # Query arguments (issue 14, item 14): 1000 of them in 7 KB exhausted libmicrohttpd's
    # records, and its own 431 never came: the client waited for request_timeout (30 s here;
    # the read gives up after 5 s).
    args = "&".join(f"a{i}=1" for i in range(100))
    is_(raw_request(d.socket_path, "GET", f"/v1/events?{args}", {}, None, read_timeout=5).status, 200,
        "100 query arguments are served")
    r = raw_request(d.socket_path, "GET", f"/v1/events?{args}&a100=1", {"X-Request-Id": "args"}, None,
                    read_timeout=5)
    check_error(r, 431, "headers-too-large", "101 query arguments: 431 headers-too-large", request_id="args")
    for n in (1000, 2000):
        args = "&".join(f"a{i}=1" for i in range(n))
        r = raw_request(d.socket_path, "GET", f"/v1/events?{args}", {}, None, read_timeout=5)
        check_error(r, 431, "headers-too-large", f"{n} query arguments ({len(args)} bytes): 431 at once")

    data, digest = random_bytes(4 << 20)
    r = raw_request(d.socket_path, "PUT", f"/v1/blobs/{digest}",
                    {"Content-Type": "application/octet-stream", "X-Pad": "p" * limit}, data)
    check_error(r, 431, "headers-too-large", "a 4 MiB blob PUT with a 16 KiB header gets its 431 at once")

    # Past the connection's memory libmicrohttpd answers by itself, before aviaryd sees the
    # request: still 431 (414 for the request line), but its own short HTML, and it closes.
    r = raw_request(d.socket_path, "GET", "/v1/health", {"X-Pad": "p" * (1 << 20)}, None)
    ok(r.status == 431 and r.json is None, "a 1 MiB head: libmicrohttpd's own 431 (not JSON)", repr(r))
    r = raw_request(d.socket_path, "GET", "/v1/health", {f"X-F{i}": "v" for i in range(2000)}, None)
    ok(r.status == 431 and r.json is None, "2000 header fields: libmicrohttpd's own 431 (not JSON)", repr(r))
    r = raw_request(d.socket_path, "GET", "/v1/health?q=" + "q" * (100 * KiB), {}, None)
    ok(r.status == 414 and r.json is None, "a 100 KiB request line: libmicrohttpd's own 414", repr(r))

    ok(d.snapshot() == snap, "the oversized heads changed nothing", lambda: snapshot_diff(snap, d.snapshot()))
    is_(d.blob_files(), files, "and stored no blob")
    ok(d.running(), "the daemon is still running")
    is_(d.client.get("/v1/health").status, 200, "and answers")


main(body)
