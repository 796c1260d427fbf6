"""Schemathesis hooks for this engine (loaded through SCHEMATHESIS_HOOKS by the contract test).

`POST /v1/products/import` takes NDJSON: the document lists its lines as an array (OpenAPI 3.1
has no item schema for streams), so an array is sent as one JSON document per line.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, list):
        return "\n".join(json.dumps(line) for line in value).encode("utf-8")
    return json.dumps(value).encode("utf-8")
