"""The canonical JSON text both stores keep properties and provenance in.

`canonical_json(value)` writes exactly what
`json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)` writes: sorted keys
make equal content give equal text, so an unchanged re-ingest is not a change.
`JSONEncoder.encode` makes a new C encoder on every call, which was most of the time spent
encoding properties in a 100k load; this one is made once. Without the C encoder (or where it
takes other arguments) the plain one is used. Values are never cyclic here (the models refuse what
JSON cannot carry), so no check is made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any


def _build() -> Callable[[Any], str]:
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if c_make_encoder is None:
        return plain.encode
    try:
        chunks = c_make_encoder(None, plain.default, encode_basestring, None, ":", ",", True, False, True)
    except TypeError:
        return plain.encode

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return encode_basestring(value)
        return "".join(chunks(value, 0))

    return encode


canonical_json: Callable[[Any], str] = _build()

__all__ = ["canonical_json"]
