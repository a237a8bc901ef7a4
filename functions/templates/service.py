"""Template rules: create, version, read, list and delete, with ownership and events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.common.catalogue import UnknownModelError, resolve_model
from functions.common.clock import now_iso
from functions.common.cursor import decode_cursor, encode_cursor
from functions.common.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from functions.common.observability import logger
from functions.common.publisher import EventPublisher
from functions.common.retry import RetryPolicy
from functions.templates.models import (
    CreateTemplateRequest,
    ForkedFrom,
    TemplateDefinition,
    TemplateDeleteResponse,
    TemplateHead,
    TemplateListResponse,
    TemplateSummary,
    TemplateVersion,
    TemplateWriteResponse,
    UpdateTemplateRequest,
)
from functions.templates.repository import (
    HEAD_VERSION,
    PUBLIC_PARTITION,
    HeadDeleteOutcome,
    TemplateGoneError,
    TemplateRepository,
)

if TYPE_CHECKING:
    # The event models are imported by the writes that publish them: the reads' cold start skips them.
    from functions.common.events import EventDetail

# Concurrent updates of one template: another version landed first, number after it.
UPDATE_RETRY = RetryPolicy(attempts=20, base_delay=0.01, max_delay=0.5)
_PHASE_OWN = "own"
_PHASE_PUBLIC = "public"
_CURSOR_KEYS = ("phase", "template_id", "updated_at")


def _created(template: TemplateVersion) -> EventDetail:
    from functions.common.events import TemplateCreated  # see TYPE_CHECKING

    return TemplateCreated(
        template_id=template.template_id, user_id=template.user_id, version=1, name=template.name
    )


def check_models(definition: TemplateDefinition) -> None:
    """Every step's ``model``/``model_tier`` must be in the catalogue (``functions.common.catalogue``):
    a 400 naming the step and the known names, so no job of an accepted template fails on its model.
    The definition is stored as written; the worker resolves the names to Bedrock ids."""
    # Lazy, as in _analyze: the analysis module imports jinja2.
    from functions.templates.analysis import TemplateDefinitionError

    for step in definition.steps:
        try:
            resolve_model(step.model, step.model_tier)
        except UnknownModelError as error:
            message = (
                f"Step {step.id!r}: unknown {error.field} {error.name!r}; known: {', '.join(error.known)}"
            )
            raise TemplateDefinitionError(
                message, details={"step": step.id, "field": error.field, "known": error.known}
            ) from None


def _analyze(definition: TemplateDefinition) -> list[str]:
    """The seed fields ``definition`` requires, once its prompts and models pass every rule (400)."""
    # Lazy: jinja2 costs ~100 ms to import and only the routes writing a definition need it.
    from functions.templates.analysis import analyze_definition

    requirements = analyze_definition(definition)
    check_models(definition)
    return requirements


def _requirements(repo: TemplateRepository, head: TemplateHead) -> list[str]:
    if head.schema_requirements is not None:
        return head.schema_requirements
    # A head written before it kept the requirements: read them from its latest version.
    latest = repo.get_version(head.template_id, head.latest_version)
    return list(latest.schema_requirements) if latest is not None else []


class TemplateService:
    def __init__(
        self,
        repository: TemplateRepository,
        publisher: EventPublisher,
        *,
        clock: Callable[[], str] = now_iso,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        retry: RetryPolicy = UPDATE_RETRY,
    ) -> None:
        self._repo = repository
        self._publisher = publisher
        self._clock = clock
        self._new_id = new_id
        self._retry = retry

    # ---------------------------------------------------------------- writes

    def create(
        self,
        caller: str,
        request: CreateTemplateRequest,
        *,
        forked_from: ForkedFrom | None = None,
        announce: Callable[[TemplateVersion], EventDetail] | None = None,
    ) -> TemplateWriteResponse:
        """Validate and write version 1. Forks and imports come through here too (so they are
        validated exactly as a create), each announcing itself with its own event."""
        requirements = _analyze(request.template_definition)
        template = TemplateVersion(
            template_id=self._new_id(),
            version=1,
            user_id=caller,
            name=request.name,
            description=request.description,
            is_public=request.is_public,
            template_definition=request.template_definition,
            schema_requirements=requirements,
            created_at=self._clock(),
            forked_from=forked_from,
        )
        try:
            self._repo.create(template)
        except TemplateGoneError:
            raise NotFoundError("The template forked from no longer exists") from None
        logger.info("Template created", extra={"template_id": template.template_id})
        self._publisher.publish((announce or _created)(template))
        return TemplateWriteResponse(
            template_id=template.template_id, version=1, schema_requirements=requirements
        )

    def update(self, caller: str, template_id: str, request: UpdateTemplateRequest) -> TemplateWriteResponse:
        requirements = _analyze(request.template_definition)
        for attempt in range(self._retry.attempts):
            head = self._owned_head(caller, template_id)
            template = TemplateVersion(
                template_id=template_id,
                version=head.latest_version + 1,
                user_id=caller,
                name=request.name if request.name is not None else head.name,
                description=request.description if request.description is not None else head.description,
                is_public=request.is_public if request.is_public is not None else head.is_public,
                template_definition=request.template_definition,
                schema_requirements=requirements,
                created_at=self._clock(),
                forked_from=head.forked_from,  # a fork stays one through its later versions
            )
            if self._repo.append_version(
                template, expected_latest=head.latest_version, head_created_at=head.created_at
            ):
                logger.info(
                    "Template version created",
                    extra={"template_id": template_id, "version": template.version, "attempt": attempt + 1},
                )
                from functions.common.events import TemplateVersionCreated  # see TYPE_CHECKING

                self._publisher.publish(
                    TemplateVersionCreated(template_id=template_id, user_id=caller, version=template.version)
                )
                return TemplateWriteResponse(
                    template_id=template_id, version=template.version, schema_requirements=requirements
                )
            self._retry.pause(attempt)
        raise ConflictError("The template is being updated concurrently; retry the request")

    def delete(self, caller: str, template_id: str) -> TemplateDeleteResponse:
        self._owned_head(caller, template_id)
        # The head goes first, on condition no job references the template (job_refs, strongly
        # consistent): once it is gone no new job or version can reference it (their transactions
        # condition on the head), so the versions can go after it.
        outcome = self._repo.delete_head(template_id, caller)
        if outcome is HeadDeleteOutcome.REFERENCED:
            raise ConflictError("The template is used by at least one job; delete those jobs first")
        if outcome is HeadDeleteOutcome.NOT_OWNER:
            raise ForbiddenError("Forbidden")
        if outcome is HeadDeleteOutcome.GONE:
            raise NotFoundError("Template not found")
        deleted = self._repo.delete_all_versions(template_id)
        logger.info("Template deleted", extra={"template_id": template_id, "versions": deleted})
        from functions.common.events import TemplateDeleted  # see TYPE_CHECKING

        self._publisher.publish(
            TemplateDeleted(template_id=template_id, user_id=caller, versions_deleted=deleted)
        )
        return TemplateDeleteResponse(
            message="Template deleted", template_id=template_id, versions_deleted=deleted
        )

    # ----------------------------------------------------------------- reads

    def get(self, caller: str, template_id: str, version: int | None) -> TemplateVersion:
        template = self._repo.get_version(template_id, version)
        if template is None:
            raise NotFoundError("Template not found")
        if not template.is_readable_by(caller):
            raise ForbiddenError("Forbidden")
        return template

    def list(
        self, caller: str, limit: int, cursor: str | None, is_public: bool | None = None
    ) -> TemplateListResponse:
        """The caller's templates (newest update first), then others' public ones, one cursor across both.

        ``is_public=True``: every public template (the caller's too); ``False``: the caller's private
        ones. It reads up to ``limit + 1`` heads so the cursor is present only while more remain; the
        cursor is the position of the page's last head in its phase.
        """
        phase, start = (_PHASE_PUBLIC if is_public else _PHASE_OWN), None
        if cursor is not None:
            phase, start = self._decode_cursor(caller, cursor)
            if is_public is not None and phase != (_PHASE_PUBLIC if is_public else _PHASE_OWN):
                raise BadRequestError("Invalid pagination cursor")
        found: list[tuple[str, TemplateHead]] = []
        while len(found) <= limit:
            if phase == _PHASE_OWN:
                page = self._repo.query_heads(
                    owner_id=caller,
                    private_only=is_public is False,
                    limit=limit + 1 - len(found),
                    exclusive_start_key=start,
                )
            else:
                page = self._repo.query_heads(
                    public=True,
                    exclude_user_id=None if is_public else caller,
                    limit=limit + 1,
                    exclusive_start_key=start,
                )
            found.extend((phase, head) for head in page.heads)
            if page.last_evaluated_key is not None:
                start = page.last_evaluated_key
                continue
            if phase == _PHASE_PUBLIC or is_public is not None:
                break
            phase, start = _PHASE_PUBLIC, None
        page_items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last_phase, last = page_items[-1]
            next_cursor = encode_cursor(
                {"phase": last_phase, "template_id": last.template_id, "updated_at": last.updated_at}
            )
        return TemplateListResponse(
            templates=[
                TemplateSummary(
                    template_id=head.template_id,
                    latest_version=head.latest_version,
                    name=head.name,
                    description=head.description,
                    is_public=head.is_public,
                    is_owner=head.user_id == caller,
                    schema_requirements=_requirements(self._repo, head),
                    created_at=head.created_at,
                    updated_at=head.updated_at,
                )
                for _, head in page_items
            ],
            last_key=next_cursor,
        )

    # --------------------------------------------------------------- helpers

    def _owned_head(self, caller: str, template_id: str) -> TemplateHead:
        head = self._repo.get_head(template_id)
        if head is None:
            raise NotFoundError("Template not found")
        if head.user_id != caller:
            # Another user's public template is visible, so say it is not yours; a private one is too.
            raise ForbiddenError("Forbidden")
        return head

    @staticmethod
    def _decode_cursor(caller: str, cursor: str) -> tuple[str, dict[str, Any]]:
        payload = decode_cursor(cursor, _CURSOR_KEYS)
        phase, template_id, updated_at = (payload[k] for k in _CURSOR_KEYS)
        if (
            phase not in (_PHASE_OWN, _PHASE_PUBLIC)
            or not isinstance(template_id, str)
            or not isinstance(updated_at, str)
            or len(template_id) > 256
            or len(updated_at) > 64
        ):
            raise BadRequestError("Invalid pagination cursor")
        key: dict[str, Any] = {"template_id": template_id, "version": HEAD_VERSION, "updated_at": updated_at}
        # The index partition comes from the caller, never from the cursor.
        if phase == _PHASE_OWN:
            key["owner_id"] = caller
        else:
            key["public_partition"] = PUBLIC_PARTITION
        return phase, key
