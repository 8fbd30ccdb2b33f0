"""contract: every answer the tests get from aviaryd, checked against api/openapi.yaml with a
JSON Schema validator we did not write (python3-jsonschema).

aviarytest.Client calls check() for each answer: the status must be documented for the
operation the request matched, and a JSON body must validate against that status's schema.
OpenAPI 3.0 schemas are JSON Schema with a few differences, translated here: `nullable`
becomes a "null" type, and `$ref`s resolve inside the spec. A request that matches no
operation (an unknown path, a method the path does not take) is the router's and has no
schema to check. Coverage (which operation answered which status) is appended to the file
named by $AVIARY_CONTRACT_LOG, so tests/api/test-contract.py can say which answers no test saw.
"""
import json
import os
import re
import warnings

import yaml

try:
    import jsonschema
except ImportError:  # tests/setup.sh installs python3-jsonschema
    jsonschema = None

_spec = None
_operations = None  # [(regex, template, method, operation)]
_root = None


def _source_root():
    return os.environ.get("AVIARY_SOURCE_ROOT") or os.path.abspath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _to_json_schema(node):
    """OpenAPI 3.0 schema objects (recursively) as JSON Schema."""
    if isinstance(node, list):
        return [_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example", "examples")
           and not k.startswith("x-")}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def load():
    global _spec, _operations, _root
    if _spec is not None:
        return _spec
    with open(os.path.join(_source_root(), "api", "openapi.yaml"), encoding="utf-8") as f:
        _spec = yaml.safe_load(f)
    _root = {"components": _to_json_schema(_spec.get("components", {}))}
    _operations = []
    for template, item in _spec.get("paths", {}).items():
        regex = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method in ("get", "head", "put", "post", "patch", "delete"):
            if method in item:
                _operations.append((regex, template, method.upper(), item[method]))
    return _spec


def _resolve(obj):
    """A response object, following its $ref into components."""
    while isinstance(obj, dict) and "$ref" in obj:
        parts = obj["$ref"].lstrip("#/").split("/")
        obj = _spec
        for p in parts:
            obj = obj[p]
    return obj


def operation_of(method, path):
    """(template, operation) that METHOD PATH matches, or (None, None)."""
    load()
    path = path.split("?", 1)[0]
    templates = [(t, op) for regex, t, m, op in _operations if m == method and regex.match(path)]
    if not templates:
        return None, None
    # The most specific template: fewest parameters ("/rollouts/current" over "/{id}" alike).
    templates.sort(key=lambda x: x[0].count("{"))
    return templates[0]


def problems(method, path, status, content_type, body):
    """What is wrong with one answer, as a list of strings (empty: it fits the spec)."""
    template, op = operation_of(method, path)
    if op is None:
        return []
    responses = op.get("responses", {})
    response = responses.get(str(status)) or responses.get("default")
    if response is None:
        return [f"{method} {template}: status {status} is not documented (documented: {sorted(responses)})"]
    response = _resolve(response)
    content = response.get("content") or {}
    if method == "HEAD" or status in (204, 304) or not body:
        return []
    mime = (content_type or "").split(";")[0].strip()
    if mime not in content:
        return [f"{method} {template} {status}: Content-Type {mime!r} is not documented (documented: {sorted(content)})"]
    schema = content[mime].get("schema")
    if schema is None or mime != "application/json" or jsonschema is None:
        return []
    try:
        document = json.loads(body)
    except ValueError as e:
        return [f"{method} {template} {status}: the body is not JSON: {e}"]
    schema = dict(_to_json_schema(schema), components=_root["components"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        validator = jsonschema.Draft4Validator(schema)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{method} {template} {status}: at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
            for e in errors[:5]]


def record(method, path, status):
    """Appends which operation answered which status to $AVIARY_CONTRACT_LOG, if set."""
    log = os.environ.get("AVIARY_CONTRACT_LOG")
    template, op = operation_of(method, path)
    if not log or op is None:
        return
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{method} {template} {status}\n")
