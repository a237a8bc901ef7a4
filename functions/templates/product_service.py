"""Versions, marketplace, fork and YAML export/import of templates.

Decisions where the issue is silent (also in docs/data-model.md and the route descriptions):

* Versions: the owner sees every version; another user sees a template's versions only while the
  template is public (403 otherwise, as ``GET /templates/{id}``), and then only the versions
  stored as public.
* Marketplace: a template is listed while its head (its latest version) is public, with that
  latest version. ``popular`` counts every job and fork ever made of the template, the owner's
  included; deleting a job or a fork does not lower it. ``q`` matches a substring of the name or
  the description, case-insensitively (Unicode case folding).
* Fork: copies one version (latest by default) of a template you may read; the fork is private
  unless ``is_public`` is asked, keeps the source's name and description unless given, and is
  validated as a create. It emits ``Template Forked`` (not also ``Template Created``).
* Import: emits ``Template Imported`` (not also ``Template Created``); the new template is private
  unless the document says ``is_public: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from functions.common.clock import now_iso
from functions.common.cursor import decode_cursor, encode_cursor
from functions.common.errors import BadRequestError, ForbiddenError, NotFoundError
from functions.common.events import TemplateForked, TemplateImported
from functions.templates.models import (
    CreateTemplateRequest,
    ForkedFrom,
    TemplateVersion,
    TemplateWriteResponse,
)
from functions.templates.product_models import (
    ForkRequest,
    ForkResponse,
    MarketplaceEntry,
    MarketplaceResponse,
    MarketplaceSort,
    TemplateVersionsResponse,
)
from functions.templates.product_repository import MarketplaceRow, ProductRepository
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService

# Each marketplace request makes at most this many Queries; with ``q`` each reads this many heads.
MAX_MARKETPLACE_QUERIES = 4
FILTERED_PAGE_SIZE = 100
_MARKETPLACE_CURSOR = ("sort", "template_id", "position")


class ProductService:
    def __init__(
        self,
        *,
        templates: TemplateService,
        heads: TemplateRepository,
        reads: ProductRepository,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._templates = templates
        self._heads = heads
        self._reads = reads
        self._clock = clock

    # --------------------------------------------------------------- versions

    def versions(
        self, caller: str, template_id: str, limit: int, cursor: str | None
    ) -> TemplateVersionsResponse:
        head = self._heads.get_head(template_id)
        if head is None:
            raise NotFoundError("Template not found")
        owner = head.user_id == caller
        if not owner and not head.is_public:
            raise ForbiddenError("Forbidden")
        before = None
        if cursor is not None:
            before = decode_cursor(cursor, ("version",))["version"]
            if not isinstance(before, int) or before < 1:
                raise BadRequestError("Invalid pagination cursor")
        page = self._reads.list_versions(template_id, limit=limit, public_only=not owner, before=before)
        next_cursor = encode_cursor({"version": page.last_version}) if page.last_version else None
        return TemplateVersionsResponse(template_id=template_id, versions=page.versions, last_key=next_cursor)

    # ------------------------------------------------------------ marketplace

    def marketplace(
        self, caller: str, q: str | None, sort: MarketplaceSort, limit: int, cursor: str | None
    ) -> MarketplaceResponse:
        text = q.strip().casefold() if q is not None and q.strip() else None
        resume = _decode_marketplace_cursor(cursor, sort) if cursor is not None else None
        found: list[MarketplaceRow] = []
        for _ in range(MAX_MARKETPLACE_QUERIES):
            wanted = limit + 1 - len(found)
            page = self._reads.query_marketplace(
                sort, limit=max(wanted, FILTERED_PAGE_SIZE) if text else wanted, text=text, start=resume
            )
            found.extend(page.rows)
            resume = page.resume
            if resume is None or len(found) > limit:
                break
        rows = found[:limit]
        if len(found) > limit:
            last = rows[-1]
            resume = (last.head.template_id, last.position)
        next_cursor = None
        if resume is not None:
            next_cursor = encode_cursor({"sort": sort.value, "template_id": resume[0], "position": resume[1]})
        return MarketplaceResponse(templates=[_entry(r, caller) for r in rows], last_key=next_cursor)

    # ------------------------------------------------------------------- fork

    def fork(self, caller: str, template_id: str, request: ForkRequest) -> ForkResponse:
        source = self._templates.get(caller, template_id, request.version)
        forked_from = ForkedFrom(template_id=source.template_id, version=source.version)
        create = CreateTemplateRequest(
            name=request.name if request.name is not None else source.name,
            description=request.description if request.description is not None else source.description,
            is_public=request.is_public,
            template_definition=source.template_definition,
        )

        def announce(template: TemplateVersion) -> TemplateForked:
            return TemplateForked(
                template_id=template.template_id,
                user_id=caller,
                version=template.version,
                name=template.name,
                forked_from_template_id=forked_from.template_id,
                forked_from_version=forked_from.version,
            )

        written = self._templates.create(caller, create, forked_from=forked_from, announce=announce)
        return ForkResponse(**written.model_dump(), forked_from=forked_from)

    # ------------------------------------------------------------ export/import
    # PyYAML (functions.templates.portable) is imported by these two routes only, not at cold start.

    def export(self, caller: str, template_id: str, version: int | None) -> tuple[TemplateVersion, str]:
        from functions.templates.portable import export_document

        template = self._templates.get(caller, template_id, version)
        return template, export_document(template, self._clock())

    def import_document(self, caller: str, raw: bytes) -> TemplateWriteResponse:
        from functions.templates.portable import parse_document

        request = parse_document(raw)

        def announce(template: TemplateVersion) -> TemplateImported:
            return TemplateImported(
                template_id=template.template_id, user_id=caller, version=template.version, name=template.name
            )

        return self._templates.create(caller, request, announce=announce)


def _entry(row: MarketplaceRow, caller: str) -> MarketplaceEntry:
    head = row.head
    return MarketplaceEntry(
        template_id=head.template_id,
        version=head.latest_version,
        name=head.name,
        description=head.description,
        is_owner=head.user_id == caller,
        job_count=head.job_count,
        fork_count=head.fork_count,
        popularity=head.popularity,
        forked_from=head.forked_from,
        created_at=head.created_at,
        updated_at=head.updated_at,
    )


def _decode_marketplace_cursor(cursor: str, sort: MarketplaceSort) -> tuple[str, Any]:
    payload = decode_cursor(cursor, _MARKETPLACE_CURSOR)
    template_id, position = payload["template_id"], payload["position"]
    expected = int if sort is MarketplaceSort.POPULAR else str
    if (
        payload["sort"] != sort.value
        or not isinstance(template_id, str)
        or len(template_id) > 256
        or not isinstance(position, expected)
        or (isinstance(position, str) and len(position) > 1024)
    ):
        raise BadRequestError("Invalid pagination cursor (it belongs to another sort order or is damaged)")
    return template_id, position
