#!/usr/bin/env python3
"""api/openapi.yaml against the daemon: every route of the route table (`aviaryd --routes`)
is an operation of the spec and every operation is a route; every path parameter is
declared; and the spec's error codes (with their HTTP statuses) are exactly api/errors.h's.

Usage: test-openapi.py [SPEC]   (default $AVIARY_SOURCE_ROOT/api/openapi.yaml)
Environment: AVIARYD (the daemon binary), AVIARY_SOURCE_ROOT. Prints TAP."""
import os
import re
import subprocess
import sys

import yaml

METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


def bail(why):
    print(f"Bail out! {why}")
    sys.exit(1)


def route_table(aviaryd):
    """{(METHOD, "/path/{param}")} from `aviaryd --routes`."""
    try:
        out = subprocess.run([aviaryd, "--routes"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        bail(f"cannot run {aviaryd} --routes: {e}")
    routes = set()
    for line in out.splitlines():
        m = re.fullmatch(r"([A-Z]+) (/\S*)", line.strip())
        if not m:
            bail(f"unexpected line from --routes: {line!r}")
        routes.add((m.group(1), m.group(2)))
    if not routes:
        bail("aviaryd --routes printed no route")
    return routes


def error_table(path):
    """{"code": status} from the X(NAME, "code", status) rows of api/errors.h."""
    with open(path, encoding="utf-8") as f:
        rows = re.findall(r'X\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(\d+)\s*\)', f.read())
    if not rows:
        bail(f"no error rows found in {path}")
    # OK is the table's success value (AVIARY_E_OK = 0), never the code of an error body.
    return {code: int(status) for name, code, status in rows if name != "OK"}


def resolve(spec, node):
    """Follows local $refs ("#/components/...")."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or seen > 20:
            bail(f"cannot resolve $ref {ref!r}")
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
    return node


def main():
    root = os.environ.get("AVIARY_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
    spec_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "api", "openapi.yaml")
    aviaryd = os.environ.get("AVIARYD")
    if not aviaryd:
        bail("AVIARYD is not set (run through meson test)")

    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    routes = route_table(aviaryd)
    errors = error_table(os.path.join(root, "api", "errors.h"))

    results = []  # (ok, description, diagnostics)

    def check(ok, what, diag=""):
        results.append((bool(ok), what, diag))

    check(spec.get("openapi") == "3.0.3", "the spec is OpenAPI 3.0.3", f"openapi: {spec.get('openapi')!r}")

    operations = {}  # (METHOD, path) -> (path item, operation)
    for path, item in (spec.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                operations[(method.upper(), path)] = (item, item[method])

    # Both directions between the route table and the spec.
    for method, path in sorted(routes, key=lambda r: (r[1], r[0])):
        check((method, path) in operations, f"route {method} {path} is in the spec")
    table_paths_with_get = {path for method, path in routes if method == "GET"}
    for method, path in sorted(operations, key=lambda o: (o[1], o[0])):
        item, op = operations[(method, path)]
        statuses = set((op.get("responses") or {}).keys())
        if statuses == {"405"}:
            # A refusal the spec documents (PUT on an immutable version): the router answers
            # it, so it must not be a route.
            check((method, path) not in routes, f"spec operation {method} {path} is a documented 405, not a route")
        elif (method, path) in routes or (method == "HEAD" and path in table_paths_with_get):
            # Statuses any routed request can get: a bad or missing token (401), a scope too low
            # or a unix-socket peer not allowed (403), a head too big (431), and the daemon's own
            # failures (500, 503).
            # The web view's files are open (no credentials): no 401 or 403 there, and the spec
            # says so with "security: []".
            open_route = op.get("security") == []
            wanted = {"431", "500", "503"} | (set() if open_route else {"401", "403"})
            missing = sorted(wanted - statuses)
            check(not missing, f"spec operation {method} {path} documents {', '.join(sorted(wanted))}",
                  f"missing: {missing}")
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                check("507" in statuses, f"spec operation {method} {path} documents 507 (a full disk)")
            if method == "POST":
                check("422" in statuses, f"spec operation POST {path} documents 422 (an Idempotency-Key reused)")
        elif method == "HEAD":
            check(False, f"spec operation HEAD {path} is implied by GET {path}",
                  "the table has no GET route for this path")
        else:
            check(False, f"spec operation {method} {path} is in the route table")

    # Every {param} of a path is declared as a path parameter, and nothing else is.
    for (method, path), (item, op) in sorted(operations.items(), key=lambda o: (o[0][1], o[0][0])):
        declared = {}
        for p in (item.get("parameters") or []) + (op.get("parameters") or []):
            p = resolve(spec, p)
            declared[(p.get("in"), p.get("name"))] = p
        wanted = set(re.findall(r"\{([^}]+)\}", path))
        in_path = {name for (where, name), p in declared.items() if where == "path" and p.get("required") is True}
        check(wanted == in_path, f"{method} {path} declares its path parameters",
              f"path has {sorted(wanted)}, declared (required) {sorted(in_path)}")
        check(op.get("responses"), f"{method} {path} has responses")

    # The error envelope's code enum is api/errors.h, with the same statuses.
    try:
        error_schema = resolve(spec, spec["components"]["schemas"]["Error"])
        code_schema = resolve(spec, error_schema["properties"]["error"]["properties"]["code"])
        enum = code_schema["enum"]
    except (KeyError, TypeError):
        bail("components/schemas/Error has no properties.error.properties.code.enum")
    statuses = code_schema.get("x-aviary-status") or {}
    check(len(enum) == len(set(enum)), "the Error code enum has no duplicates")
    for code in sorted(set(enum) | set(errors)):
        if code not in errors:
            check(False, f"error code {code} of the spec is in api/errors.h")
        elif code not in enum:
            check(False, f"error code {code} of api/errors.h is in the spec's Error enum")
        else:
            check(statuses.get(code) == errors[code], f"error code {code} is in both, with status {errors[code]}",
                  f"spec x-aviary-status says {statuses.get(code)!r}")
    for code in sorted(set(statuses) - set(enum)):
        check(False, f"x-aviary-status names only codes of the enum ({code})")

    print(f"1..{len(results)}")
    for n, (ok, what, diag) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {n} - {what}")
        if not ok and diag:
            print(f"# {diag}")
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
