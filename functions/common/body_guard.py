"""What a request body must be before anything parses it: JSON, shallow, with short numbers.

Every API body is a small JSON document. Parsing a hostile one can crash the Lambda before any
validation runs: a thousand ``[`` overflow the recursion of Python's JSON parser, a 4,301-digit
integer trips its int conversion limit, and Powertools parses ``multipart/form-data`` and forms
itself (a multipart header without a boundary raised). So the resolver runs ``body_rejection``
on the raw body first, in linear time and without recursion:

- a body on POST/PUT/PATCH must be ``application/json`` (any parameters; no header at all is read
  as JSON): anything else, multipart and forms included, is a 415 and is never parsed;
- the body may nest arrays and objects at most ``MAX_JSON_DEPTH`` deep and hold no number longer
  than ``MAX_NUMBER_CHARS`` digits: a 400 otherwise.

Strings are skipped before counting, so brackets and digits inside them are harmless.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from http import HTTPStatus
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 100
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"
UNSUPPORTED_MEDIA_TYPE_MESSAGE = "Unsupported content type: send JSON with Content-Type: application/json"

# A JSON string (an unterminated one runs to the end: the parser rejects it later). The optional
# closing quote keeps the scan linear: no start position is ever rescanned.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"\d{{{MAX_NUMBER_CHARS + 1},}}")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


# Routes that take another media type than JSON (e.g. a YAML import) declare it here when their
# module is imported; such a body is left to the route, which parses and bounds it itself.
_OWN_MEDIA_TYPES: dict[str, frozenset[str]] = {}


def accept_media_types(path: str, media_types: frozenset[str]) -> None:
    """Let the route at ``path`` take bodies of ``media_types`` besides JSON."""
    _OWN_MEDIA_TYPES[path] = frozenset(media_types)


@dataclass(frozen=True)
class BodyRejection:
    status: int
    message: str


def _header(headers: dict[str, Any] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _body_text(event: dict[str, Any]) -> str:
    body = event.get("body") or ""
    if event.get("isBase64Encoded") and body:
        try:
            return base64.b64decode(body).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return body
    return str(body)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings ignored)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, *accumulate(map(_STEP.__getitem__, brackets)))


def json_rejection(text: str) -> BodyRejection | None:
    """A 400 for a body nested too deep or holding a too-long number; None when it may be parsed."""
    bare = _STRING.sub("", text)
    if _LONG_NUMBER.search(bare):
        return BodyRejection(
            HTTPStatus.BAD_REQUEST, f"A number in the body has more than {MAX_NUMBER_CHARS} digits"
        )
    opened = bare.count("[") + bare.count("{")
    if opened > MAX_JSON_DEPTH and json_depth(bare) > MAX_JSON_DEPTH:
        return BodyRejection(
            HTTPStatus.BAD_REQUEST, f"The body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
        )
    return None


def body_rejection(event: dict[str, Any]) -> BodyRejection | None:
    """Why the request's body must not be parsed (415 or 400), or None when it may be."""
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
    if method not in BODY_METHODS:
        return None
    media_type = _media_type(_header(event.get("headers"), "content-type"))
    if media_type != JSON_MEDIA_TYPE and media_type in _OWN_MEDIA_TYPES.get(
        str(event.get("rawPath", "")), ()
    ):
        return None
    if media_type and media_type != JSON_MEDIA_TYPE:
        return BodyRejection(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE_MESSAGE)
    return json_rejection(_body_text(event)) if event.get("body") else None
