"""Templates as YAML documents, to move them between deployments (export and import).

The document holds one version's ``name``, ``description``, ``steps`` and ``schema_requirements``::

    # plot-palette template 3f6c... version 2, exported 2026-11-30T12:05:00.000Z
    name: Author bios
    description: One bio per author
    steps:
    - id: bio
      prompt: |
        Write a short bio of {{ author.name }}.
      model_tier: tier-1
    schema_requirements:
    - author.name

Import reads the same document (``is_public`` may be added; it defaults to false). Parsing is
defensive: the body is size-limited before parsing; PyYAML's *safe* loader builds only plain
mappings, lists and scalars (no Python objects); anchors/aliases are refused (an alias bomb
expands exponentially), and so are duplicate keys and unknown top-level keys. Any YAML error is a
400 naming its line. ``schema_requirements`` in an imported document is informational: the
template's requirements are always computed again from its prompts.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from functions.common.errors import BadRequestError, PayloadTooLargeError
from functions.templates.models import CreateTemplateRequest, TemplateVersion, definition_to_dict
from functions.templates.product_models import MAX_IMPORT_BYTES

IMPORT_KEYS = frozenset({"name", "description", "steps", "schema_requirements", "is_public"})


# ------------------------------------------------------------------- export


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as literal blocks, so the file reads like the prompt."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted style by itself where a literal block cannot hold the text.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def export_document(template: TemplateVersion, exported_at: str) -> str:
    document = {
        "name": template.name,
        "description": template.description,
        "steps": definition_to_dict(template.template_definition)["steps"],
        "schema_requirements": list(template.schema_requirements),
    }
    header = (
        f"# plot-palette template {template.template_id} version {template.version}, exported {exported_at}\n"
    )
    body = yaml.dump(
        document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return header + body


# ------------------------------------------------------------------- import


class _StrictLoader(yaml.SafeLoader):
    """The safe loader without anchors/aliases and without duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not supported", event.start_mark
            )
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not supported", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_document(raw: bytes) -> CreateTemplateRequest:
    """The create request an imported document stands for, or a 400/413 saying what is wrong."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise PayloadTooLargeError(
            f"The document is {len(raw)} bytes; the limit is {MAX_IMPORT_BYTES}",
            details={"limit": MAX_IMPORT_BYTES},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("The document is not UTF-8 text") from None
    document = _load(text)
    if not isinstance(document, dict):
        raise BadRequestError("The document must be a YAML mapping with name, description and steps")
    unknown = sorted(str(k) for k in document if k not in IMPORT_KEYS)
    if unknown:
        raise BadRequestError(
            f"Unknown keys in the document: {', '.join(unknown)}; allowed: {', '.join(sorted(IMPORT_KEYS))}",
            details={"unknown": unknown},
        )
    candidate = {
        "name": document.get("name"),
        "description": document.get("description"),
        "is_public": document.get("is_public", False),
        "template_definition": {"steps": document.get("steps")},
    }
    try:
        return CreateTemplateRequest.model_validate(candidate)
    except ValidationError as error:
        details = [
            {"loc": _document_location(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        raise BadRequestError("The document is not a valid template", details=details) from None


def _load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = error.problem or error.context or "invalid YAML"
        where = f" on line {line}" if line is not None else ""
        raise BadRequestError(f"YAML error{where}: {problem}", details={"line": line}) from None
    except yaml.YAMLError as error:
        raise BadRequestError(f"YAML error: {error}") from None
    except RecursionError:
        raise BadRequestError("YAML error: the document is nested too deeply") from None


def _document_location(loc: tuple[Any, ...]) -> list[Any]:
    """``("template_definition", "steps", 0, "prompt")`` → ``["steps", 0, "prompt"]``: the
    document's own keys."""
    parts = list(loc)
    if parts[:1] == ["template_definition"]:
        parts = parts[1:]
    return parts
