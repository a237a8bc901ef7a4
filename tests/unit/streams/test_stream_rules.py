"""Pure rules of the stream consumers: which Jobs changes trigger a pass, and how a cancelled
transaction's CancellationReasons are read (moto never answers TransactionConflict, AWS does)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from functions.common.dynamo import to_item
from functions.common.retry import RetryPolicy
from functions.promoter.models import ClaimOutcome, JobStreamRecord, QueueEntry, SlotState, StartOutcome
from functions.promoter.repository import TransientClaimError, UnexpectedCancellation, claim_outcome
from functions.promoter.service import PromoterService
from functions.reconciler.models import QueuedJobState
from functions.rollup.models import CostBreakdown, CostDelta, RollupOutcome
from functions.rollup.repository import TransientRollupError, rollup_outcome
from tests.conftest import load_event

pytestmark = pytest.mark.unit

OK: dict[str, Any] = {"Code": "None"}
FAILED: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}


def failed_with(item: dict[str, Any]) -> dict[str, Any]:
    return FAILED | {"Item": item}


@pytest.mark.parametrize(
    ("event_name", "new", "old", "expected"),
    [
        ("INSERT", {"job_id": "j", "status": "QUEUED"}, None, True),
        ("INSERT", {"job_id": "j", "status": "RUNNING"}, None, False),
        (
            "MODIFY",
            {"job_id": "j", "status": "COMPLETED", "slot_released_at": "t1"},
            {"job_id": "j", "status": "COMPLETED"},
            True,
        ),
        # The same release seen again in a later, unrelated change: not a new release.
        (
            "MODIFY",
            {"job_id": "j", "status": "COMPLETED", "slot_released_at": "t1", "updated_at": "t2"},
            {"job_id": "j", "status": "COMPLETED", "slot_released_at": "t1"},
            False,
        ),
        ("MODIFY", {"job_id": "j", "status": "RUNNING"}, {"job_id": "j", "status": "QUEUED"}, False),
        ("REMOVE", None, {"job_id": "j", "status": "COMPLETED", "slot_released_at": "t1"}, False),
        # A release written just after the job's deletion recreates a bare item: still a release.
        ("INSERT", {"job_id": "j", "slot_released_at": "t1", "updated_at": "t1"}, None, True),
    ],
)
def test_what_triggers_a_promotion_pass(
    event_name: str, new: dict[str, Any] | None, old: dict[str, Any] | None, expected: bool
) -> None:
    record = load_event("dynamodb_stream")["Records"][0]
    record["eventName"] = event_name
    record["dynamodb"].pop("NewImage")
    for image, values in (("NewImage", new), ("OldImage", old)):
        if values is not None:
            record["dynamodb"][image] = to_item(values)

    assert JobStreamRecord.model_validate(record).triggers_promotion is expected


def _record(event_name: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> JobStreamRecord:
    record = load_event("dynamodb_stream")["Records"][0]
    record["eventName"] = event_name
    record["dynamodb"].pop("NewImage")
    for image, values in (("NewImage", new), ("OldImage", old)):
        if values is not None:
            record["dynamodb"][image] = to_item(values)
    return JobStreamRecord.model_validate(record)


QUEUED_JOB = {"job_id": "j", "user_id": "u", "status": "QUEUED"}


@pytest.mark.parametrize(
    ("event_name", "new", "old", "left"),
    [
        ("MODIFY", QUEUED_JOB | {"status": "RUNNING"}, QUEUED_JOB, True),  # promoted and started
        ("MODIFY", QUEUED_JOB | {"status": "CANCELLED"}, QUEUED_JOB, True),  # cancelled while queued
        ("MODIFY", QUEUED_JOB | {"status": "FAILED"}, QUEUED_JOB, True),  # the lifecycle's last resort
        ("REMOVE", None, QUEUED_JOB, True),  # deleted while queued
        ("INSERT", QUEUED_JOB, None, False),  # queued
        ("MODIFY", QUEUED_JOB | {"cancel_requested_at": "t"}, QUEUED_JOB, False),  # still QUEUED
        ("MODIFY", QUEUED_JOB | {"status": "COMPLETED"}, QUEUED_JOB | {"status": "RUNNING"}, False),
        ("REMOVE", None, QUEUED_JOB | {"status": "COMPLETED"}, False),  # left long before
    ],
)
def test_which_records_take_a_job_out_of_its_users_queued_set(
    event_name: str, new: dict[str, Any] | None, old: dict[str, Any] | None, left: bool
) -> None:
    image = _record(event_name, new, old).left_queue
    assert (image is not None and (image.user_id, image.job_id) == ("u", "j")) is left


@pytest.mark.parametrize(
    ("job", "left_by_cutoff"),
    [
        ({"status": "QUEUED", "updated_at": "2026-01-01T00:00:00.000Z"}, False),
        ({"status": "RUNNING", "started_at": "2026-11-30T11:58:59.000Z"}, True),
        ({"status": "RUNNING", "started_at": "2026-11-30T11:59:01.000Z"}, False),  # the stream's to do
        (
            {
                "status": "COMPLETED",
                "started_at": "2026-11-30T11:00:00.000Z",
                "completed_at": "2026-11-30T12:00:00.000Z",
            },
            True,
        ),
        ({"status": "CANCELLED", "completed_at": "2026-11-30T11:58:00.000Z"}, True),  # never started
        ({"status": "CANCELLED", "completed_at": "2026-11-30T11:59:30.000Z"}, False),
        ({}, True),  # a bare item recreated after the job's deletion
    ],
)
def test_when_the_reconciler_takes_an_id_out_of_a_queued_set(
    job: dict[str, Any], left_by_cutoff: bool
) -> None:
    state = QueuedJobState.model_validate({"job_id": "j", **job})
    assert state.left_queue_by("2026-11-30T11:59:00.000Z") is left_by_cutoff


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([failed_with({"holders": {"SS": ["a", "b", "c"]}}), OK, OK], ClaimOutcome.SLOTS_FULL),
        ([failed_with({"holders": {"SS": ["a", "me"]}}), FAILED, OK], ClaimOutcome.TAKEN),
        ([OK, FAILED, OK], ClaimOutcome.TAKEN),
        (
            [OK, OK, failed_with({"status": {"S": "QUEUED"}, "cancel_requested_at": {"S": "t"}})],
            ClaimOutcome.CANCEL_PENDING,
        ),
        ([OK, OK, failed_with({"status": {"S": "CANCELLED"}})], ClaimOutcome.STALE),
        ([OK, OK, FAILED], ClaimOutcome.STALE),  # the job is gone: no item comes back
    ],
)
def test_reading_a_cancelled_claim(reasons: list[dict[str, Any]], expected: ClaimOutcome) -> None:
    assert claim_outcome("me", reasons) is expected


def test_a_conflicting_claim_is_transient_and_an_unknown_reason_is_not() -> None:
    with pytest.raises(TransientClaimError):
        claim_outcome("me", [{"Code": "TransactionConflict"}, OK, OK])
    with pytest.raises(UnexpectedCancellation):
        claim_outcome("me", [{"Code": "ValidationError"}, OK, OK])


DELTA = CostDelta(
    job_id="j",
    record_id="00000001",
    tokens_in=1,
    tokens_out=2,
    records=1,
    cost=CostBreakdown(bedrock=Decimal("0.1"), fargate=Decimal("0.2"), s3=Decimal("0")),
)


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([failed_with({"rolled_up_at": {"S": "t"}}), OK], RollupOutcome.ALREADY_APPLIED),
        ([FAILED, OK], RollupOutcome.DELTA_GONE),
        ([OK, FAILED], RollupOutcome.JOB_GONE),
        ([failed_with({"rolled_up_at": {"S": "t"}}), FAILED], RollupOutcome.ALREADY_APPLIED),
    ],
)
def test_reading_a_cancelled_rollup(reasons: list[dict[str, Any]], expected: RollupOutcome) -> None:
    assert rollup_outcome(DELTA, reasons) is expected


def test_a_conflicting_rollup_is_transient() -> None:
    with pytest.raises(TransientRollupError):
        rollup_outcome(DELTA, [OK, {"Code": "TransactionConflict"}])


def test_a_delta_total_is_exact_decimal() -> None:
    assert DELTA.cost.total == Decimal("0.3")
    assert DELTA.tokens_used == 3


class _ConflictingQueue:
    """A Queue whose first claims conflict, as concurrent promoters' do on the SLOTS item in AWS."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.claims = 0

    def slot_state(self) -> SlotState:
        return SlotState(holders=frozenset(), users={})

    def queued_entries(self, page_size: int = 25) -> list[QueueEntry]:
        return [
            QueueEntry(status="QUEUED", queue_key="05#2026-11-30T12:00:00.000Z#j", job_id="j", user_id="u")
        ]

    def claim(self, entry: QueueEntry, max_running: int, per_user_cap: int | None = None) -> ClaimOutcome:
        self.claims += 1
        if self.claims <= self.conflicts:
            raise TransientClaimError("TransactionConflict")
        return ClaimOutcome.CLAIMED


class _Executions:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    def start(self, job_id: str, user_id: str) -> StartOutcome:
        self.started.append((job_id, user_id))
        return StartOutcome.STARTED


def test_a_conflicting_claim_is_retried_with_backoff_then_promoted() -> None:
    queue, executions, sleeps = _ConflictingQueue(conflicts=2), _Executions(), []
    service = PromoterService(queue, executions, 3, retry=RetryPolicy(sleep=sleeps.append))  # type: ignore[arg-type]

    report = service.promote()

    assert report.promoted == ["j"]
    assert executions.started == [("j", "u")]
    assert queue.claims == 3
    assert len(sleeps) == 2


def test_a_claim_that_keeps_conflicting_fails_the_pass() -> None:
    queue, executions = _ConflictingQueue(conflicts=99), _Executions()
    service = PromoterService(queue, executions, 3, retry=RetryPolicy(attempts=3, sleep=lambda _: None))  # type: ignore[arg-type]

    with pytest.raises(TransientClaimError):
        service.promote()
    assert queue.claims == 3
    assert executions.started == []
