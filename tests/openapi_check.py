"""openapi_check.py - checks clients/openapi.yaml against the daemon.

Every route of the daemon's route table (daemon/ed_api.c) must be in the
description with the same method, and the description must hold no route
the daemon lacks.  Every /v1 operation must list the 401 a missing token
gets.  Every $ref must resolve.  No mapping value may be null: in YAML a
bare comma in a flow mapping ("{description: a, b}") silently makes "b"
a key with a null value.

Usage: python3 openapi_check.py OPENAPI.yaml ED_API.c
"""
import re
import sys

import yaml

METHODS = ("get", "post", "put", "delete", "patch")


def daemon_routes(path):
    """(METHOD, path) pairs of the C route table."""
    text = open(path, encoding="utf-8").read()
    table = text[text.index("routes[] = {"):text.index("};")]
    return set(re.findall(r'\{"([A-Z]+)", "([^"]+)"', table))


def spec_routes(spec):
    return {(m.upper(), p) for p, item in spec["paths"].items()
            for m in item if m in METHODS}


def walk(node, where, errors, spec):
    """Null values and unresolved $refs anywhere below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if value is None:
                errors.append(f"{here}: null value")
            if key == "$ref" and not resolves(spec, value):
                errors.append(f"{here}: {value} does not resolve")
            walk(value, here, errors, spec)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{where}/{i}", errors, spec)


def resolves(spec, ref):
    if not ref.startswith("#/"):
        return False
    node = spec
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def main():
    spec = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
    errors = []
    daemon, described = daemon_routes(sys.argv[2]), spec_routes(spec)
    for method, path in sorted(daemon - described):
        errors.append(f"{method} {path}: served but not described")
    for method, path in sorted(described - daemon):
        errors.append(f"{method} {path}: described but not served")
    for path, item in spec["paths"].items():
        for method in (m for m in item if m in METHODS):
            if path.startswith("/v1") and \
                    "401" not in item[method].get("responses", {}):
                errors.append(f"{method.upper()} {path}: no 401")
    walk(spec, "", errors, spec)
    for e in errors:
        print(f"openapi_check: {e}")
    print(f"openapi_check: {len(daemon)} routes, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
