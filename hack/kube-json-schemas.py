#!/usr/bin/env python3
"""Writes the JSON schemas kubeconform validates against, without network access.

kubeconform normally downloads them from a repository of schemas made by
openapi2jsonschema. This script makes the same "standalone strict" layout from
sources already on the machine:

- Kubernetes' own kinds from the OpenAPI v2 spec in the k8s.io/kubernetes Go module
  (api/openapi-spec/swagger.json), the release the test control plane runs;
- custom resources from CustomResourceDefinitions (given as JSON, one document per
  line: Python's standard library reads no YAML).

One file per kind and version, named as kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}`
template expects: `deployment-apps-v1.json`, `service-v1.json`,
`testenvironment-testmesh-v1alpha1.json`. "Standalone": every file is self-contained,
the definitions it uses copied into its own `definitions` (recursive types such as
JSONSchemaProps stay references inside the file). "Strict": every object with known
properties rejects unknown ones, as the API server's strict field validation does.

Usage: kube-json-schemas.py --openapi swagger.json [--crds crds.jsonl] --output DIR
"""

import argparse
import copy
import json
import sys
from pathlib import Path

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
REF_PREFIX = "#/definitions/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = [{"type": "string"}, {"type": "integer"}]


def kind_suffix(group, version):
    """kubeconform's KindSuffix: the group's first label (none for the core group)."""
    if not group:
        return f"-{version}"
    return f"-{group.split('.')[0]}-{version}".lower()


def api_version(group, version):
    return f"{group}/{version}" if group else version


# --- Kubernetes' OpenAPI v2 definitions ------------------------------------------------


def strict_openapi(schema):
    """An OpenAPI v2 schema as strict JSON Schema draft 4 (a new object)."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        # Siblings of $ref are ignored by draft 4 anyway; keep only the reference.
        return {"$ref": schema["$ref"]}
    if schema.get("format") == "int-or-string":
        return {"description": schema.get("description", ""), "oneOf": INT_OR_STRING}
    out = {}
    for key, value in schema.items():
        if key == "properties":
            required = set(schema.get("required", []))
            out[key] = {
                name: optional_may_be_null(strict_openapi(prop), name in required)
                for name, prop in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = strict_openapi(value)
        elif key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def optional_may_be_null(schema, required):
    """An optional field may be null: the API server treats null as absent."""
    kind = schema.get("type")
    if required or not isinstance(kind, str):
        return schema
    return {**schema, "type": [kind, "null"]}


def kubernetes_definitions(swagger):
    definitions = {
        name: strict_openapi(schema) for name, schema in swagger["definitions"].items()
    }
    quantity = definitions[QUANTITY]
    definitions[QUANTITY] = {
        "description": quantity.get("description", ""),
        "oneOf": [{"type": "string"}, {"type": "number"}],
    }
    return definitions


def references(schema):
    """The definition names a schema refers to directly."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                found.add(ref[len(REF_PREFIX) :])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def closure(schema, definitions):
    """Every definition `schema` needs, directly or through other definitions."""
    needed, pending = {}, list(references(schema))
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        if name not in definitions:
            sys.exit(f"unresolved reference {REF_PREFIX}{name}")
        needed[name] = definitions[name]
        pending.extend(references(definitions[name]))
    return dict(sorted(needed.items()))


def standalone(root, definitions, group, version, kind):
    """A self-contained schema for one kind: its apiVersion and kind pinned."""
    document = copy.deepcopy(root)
    properties = document.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "enum": [api_version(group, version)]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    document["required"] = sorted(set(document.get("required", [])) | {"apiVersion", "kind"})
    document["$schema"] = DRAFT_04
    used = closure(document, definitions)
    if used:
        document["definitions"] = used
    return document


# --- CustomResourceDefinitions -----------------------------------------------------------


def strict_crd_schema(schema):
    """A CRD's structural OpenAPI v3 schema as strict JSON Schema draft 4."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: strict_crd_schema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_crd_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_crd_schema(item) for item in value]
        elif key in ("nullable",) or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = INT_OR_STRING
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    open_ended = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not open_ended:
        out["additionalProperties"] = False
    return out


def crd_schemas(crd, definitions):
    """(file name, schema) for every served version of a CRD."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for served in spec["versions"]:
        schema = served.get("schema", {}).get("openAPIV3Schema")
        if schema is None:
            continue
        root = strict_crd_schema(schema)
        # CRDs declare metadata as a bare object; the API server checks it as ObjectMeta.
        root.setdefault("properties", {})["metadata"] = {"$ref": REF_PREFIX + OBJECT_META}
        version = served["name"]
        name = f"{kind.lower()}{kind_suffix(group, version)}.json"
        yield name, standalone(root, definitions, group, version, kind)


# --- main --------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openapi", type=Path, required=True, help="Kubernetes swagger.json")
    parser.add_argument("--crds", type=Path, help="CRDs as JSON, one document per line")
    parser.add_argument("--output", type=Path, required=True, help="directory to write")
    args = parser.parse_args()

    swagger = json.loads(args.openapi.read_text())
    definitions = kubernetes_definitions(swagger)
    schemas = {}
    for name, root in definitions.items():
        for gvk in swagger["definitions"][name].get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            file = f"{kind.lower()}{kind_suffix(group, version)}.json"
            # Shared option types (DeleteOptions, WatchEvent, …) list every group; the
            # kinds that matter have one definition each.
            if file in schemas and schemas[file][0] != name:
                sys.exit(f"{file}: both {schemas[file][0]} and {name}")
            schemas[file] = (name, standalone(root, definitions, group, version, kind))

    crd_count = 0
    if args.crds:
        for line in args.crds.read_text().splitlines():
            document = json.loads(line) if line.strip() else None
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            crd_count += 1
            for file, schema in crd_schemas(document, definitions):
                if file in schemas:
                    sys.exit(f"{file}: CRD {document['metadata']['name']} clashes with {schemas[file][0]}")
                schemas[file] = (document["metadata"]["name"], schema)

    args.output.mkdir(parents=True, exist_ok=True)
    for file, (_, schema) in sorted(schemas.items()):
        (args.output / file).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    print(f"{len(schemas)} schemas ({crd_count} CRDs) written to {args.output}")


if __name__ == "__main__":
    main()
