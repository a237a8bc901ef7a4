"""DynamoDB Streams → Lambda failure handling as AWS does it (MiniStack 1.5.33 ignores it).

MiniStack 1.5.33's DynamoDB stream poller (``lambda_svc._poll_dynamodb_streams``) advances past a
whole batch whenever the function returns, even when it reports ``batchItemFailures`` (the failed
records are silently dropped), and retries a batch whose invocation failed forever, blocking the
shard (``MaximumRetryAttempts`` and ``BisectBatchOnFunctionError`` are ignored). The stream
consumers (queue promoter, cost rollup) rely on AWS's behaviour, so this shim replaces the poller
with one that implements it:

- ``ReportBatchItemFailures``: the records before the lowest failed sequence number are checkpointed;
  the batch is retried from the first failure. An identifier that matches no record of the batch
  (or an empty one) fails the whole batch, as on AWS.
- ``MaximumRetryAttempts`` (``-1`` or absent: unlimited): once a batch has failed that many retries,
  it is discarded — sent to the ``OnFailure`` destination if one is configured — and the shard moves on.
- ``BisectBatchOnFunctionError``: a failing batch of more than one record is split in half and the
  first half retried; splitting does not count towards the retry quota (as on AWS).
- ``MaximumRecordAgeInSeconds`` and filter criteria keep MiniStack's behaviour.
- Restarts with persisted state: MiniStack saves each mapping's read position but not the stream
  records, so a restarted stream begins again at position 0 while the mapping still points past
  its old end, and new records (a job queued after ``plot-palette local`` restarts) are never
  delivered. After a restore, every DynamoDB stream mapping resumes at 0: the start of the stream
  as it exists after the restart, so nothing written since is missed and nothing is replayed.

Everything else (positions, persistence, backoff, invocation) is MiniStack's own machinery.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from local.shims import require_version

_lock = threading.Lock()
# esm_id -> {checkpoint position: failed attempts at that position}
_attempts: dict[str, dict[int, int]] = {}
# esm_id -> the batch size to use after a bisection (None: the mapping's BatchSize)
_batch_limit: dict[str, int] = {}


def _failed_index(esm: dict[str, Any], result: dict[str, Any], raw: list[dict[str, Any]],
                  kept: list[dict[str, Any]]) -> int | None:  # fmt: skip
    """Index (in the raw batch) of the first record to retry; None when the batch succeeded."""
    if result.get("error"):
        return 0
    if "ReportBatchItemFailures" not in (esm.get("FunctionResponseTypes") or []):
        return None
    body = result.get("body")
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict):
        return None
    failures = body.get("batchItemFailures") or []
    if not failures:
        return None
    by_sequence = {
        str((record.get("dynamodb") or {}).get("SequenceNumber")): index for index, record in enumerate(raw)
    }
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or str(identifier) not in by_sequence:
            return 0  # AWS: an unknown or empty identifier fails the whole batch
        indexes.append(by_sequence[str(identifier)])
    del kept
    return min(indexes)


def poll_dynamodb_streams() -> bool:
    """MiniStack's DynamoDB stream poller with AWS's failure handling. Returns True if any ESM advanced."""
    from ministack.services import dynamodb as ddb
    from ministack.services import lambda_svc as lam

    if getattr(ddb, "_stream_records", None) is None:
        return False
    processed_any = False
    for acct_id, region, esm in lam._iter_all_esms():
        account_token = lam._request_account_id.set(acct_id)
        region_token = lam._request_region.set(region)
        try:
            processed_any = _poll_one(lam, ddb, esm) or processed_any
        finally:
            lam._request_account_id.reset(account_token)
            lam._request_region.reset(region_token)
    return processed_any


def _source(lam: Any, ddb: Any, esm: dict[str, Any]) -> tuple[str, Any] | None:
    """(table name, function record) of an enabled mapping on a live stream of this account/region."""
    if not esm.get("Enabled", True):
        return None
    source_arn = esm.get("EventSourceArn", "")
    try:
        spec = lam.parse_arn(source_arn)
    except lam.ArnParseError:
        return None
    if (spec.service, spec.account_id, spec.region) != ("dynamodb", lam.get_account_id(), lam.get_region()):
        return None
    table_stream = lam._dynamodb_stream_table_from_arn_spec(spec)
    if table_stream is None:
        return None
    table_name, _label = table_stream
    func_rec, _cfg = lam._get_func_record_for_qualifier(esm["FunctionName"], esm.get("Qualifier"))
    table = ddb._tables.get(table_name)
    if func_rec is None or not table or table.get("LatestStreamArn") != source_arn:
        return None
    return table_name, func_rec


def _position(lam: Any, esm: dict[str, Any], horizon: int, end: int) -> int:
    """The mapping's read position (LATEST / TRIM_HORIZON on its first poll), never before the horizon."""
    positions, esm_id = lam._dynamodb_stream_positions, esm["UUID"]
    with lam._dynamodb_stream_positions_lock:
        if esm_id not in positions:
            positions[esm_id] = horizon if esm.get("StartingPosition", "LATEST") == "TRIM_HORIZON" else end
        positions[esm_id] = max(positions[esm_id], horizon)
        return int(positions[esm_id])


def _advance(lam: Any, esm_id: str, to: int) -> None:
    with lam._dynamodb_stream_positions_lock:
        lam._dynamodb_stream_positions[esm_id] = to


def _poll_one(lam: Any, ddb: Any, esm: dict[str, Any]) -> bool:
    source = _source(lam, ddb, esm)
    if source is None:
        return False
    table_name, func_rec = source
    horizon, end = ddb.stream_start_position(table_name), ddb.stream_end_position(table_name)
    esm_id = esm["UUID"]
    if end == horizon or lam._esm_backoff_until.get(esm_id, 0) > time.time():
        return False
    pos = _position(lam, esm, horizon, end)
    batch_size = int(esm.get("BatchSize", 100))
    with _lock:
        batch_size = min(batch_size, _batch_limit.get(esm_id, batch_size))
    raw = ddb.stream_records_since(table_name, pos, batch_size)
    if not raw:
        return False
    kept = lam._apply_filter_criteria(list(raw), esm)
    if not kept:
        _advance(lam, esm_id, pos + len(raw))
        return True
    result = lam._execute_function(func_rec, {"Records": kept})
    failed_at = _failed_index(esm, result, raw, kept)
    if failed_at is None:
        _succeeded(lam, esm, pos + len(raw), len(kept))
        return True
    return _failed(lam, esm, _Batch(func_rec, raw, pos, failed_at, result))


def _succeeded(lam: Any, esm: dict[str, Any], to: int, delivered: int) -> None:
    esm_id = esm["UUID"]
    _advance(lam, esm_id, to)
    _discard(esm_id)
    lam._esm_backoff_until.pop(esm_id, None)
    esm["LastProcessingResult"] = f"OK - {delivered} records"


class _Batch:
    """A batch whose invocation failed at ``raw[failed_at]`` (read from stream position ``pos``)."""

    def __init__(
        self, func_rec: Any, raw: list[dict[str, Any]], pos: int, failed_at: int, result: dict[str, Any]
    ) -> None:
        self.func_rec, self.raw, self.pos, self.failed_at, self.result = func_rec, raw, pos, failed_at, result

    @property
    def remaining(self) -> list[dict[str, Any]]:
        return self.raw[self.failed_at :]

    @property
    def checkpoint(self) -> int:
        return self.pos + self.failed_at

    @property
    def end(self) -> int:
        return self.pos + len(self.raw)


def _too_old(esm: dict[str, Any], batch: _Batch) -> bool:
    max_age = esm.get("MaximumRecordAgeInSeconds")
    if not max_age or int(max_age) <= 0:
        return False
    oldest = min(
        (
            float((r.get("dynamodb") or {}).get("ApproximateCreationDateTime", time.time()))
            for r in batch.remaining
        ),
        default=time.time(),
    )
    return time.time() - oldest > int(max_age)


def _retries_used(esm_id: str, checkpoint: int) -> int:
    """Count this failure at ``checkpoint``; returns the retries already spent there."""
    with _lock:
        per_position = _attempts.setdefault(esm_id, {})
        for stale in [p for p in per_position if p != checkpoint]:
            del per_position[stale]
        per_position[checkpoint] = per_position.get(checkpoint, 0) + 1
        return per_position[checkpoint] - 1


def _give_up(lam: Any, esm: dict[str, Any], batch: _Batch, reason: str) -> bool:
    """Send the rest of the batch to the OnFailure destination (if any) and move past it."""
    lam._send_ddb_stream_failure_record(
        esm, batch.func_rec, batch.remaining, esm.get("EventSourceArn", ""), batch.result, reason
    )
    _discard(esm["UUID"])
    _advance(lam, esm["UUID"], batch.end)
    return True


def _failed(lam: Any, esm: dict[str, Any], batch: _Batch) -> bool:
    """Checkpoint what succeeded before the first failure; then give up, bisect or retry from there."""
    esm_id = esm["UUID"]
    esm["LastProcessingResult"] = "FAILED"
    if _too_old(esm, batch):
        return _give_up(lam, esm, batch, "MaxRecordAgeExceeded")
    if esm.get("BisectBatchOnFunctionError") and len(batch.remaining) > 1:
        with _lock:
            _batch_limit[esm_id] = max(1, len(batch.remaining) // 2)
        _advance(lam, esm_id, batch.checkpoint)
        return batch.failed_at > 0
    max_retries = esm.get("MaximumRetryAttempts")
    retries_used = _retries_used(esm_id, batch.checkpoint)
    if max_retries is not None and int(max_retries) >= 0 and retries_used >= int(max_retries):
        return _give_up(lam, esm, batch, "RetryAttemptsExhausted")
    _advance(lam, esm_id, batch.checkpoint)
    lam._esm_backoff_until[esm_id] = time.time() + lam._ESM_BACKOFF_SECONDS
    return batch.failed_at > 0


def _discard(esm_id: str) -> None:
    with _lock:
        _attempts.pop(esm_id, None)
        _batch_limit.pop(esm_id, None)


def install() -> None:
    require_version("stream_batches")
    from ministack.services import lambda_svc

    needed = (
        "_poll_dynamodb_streams",
        "_iter_all_esms",
        "_execute_function",
        "_apply_filter_criteria",
        "_dynamodb_stream_positions",
        "_dynamodb_stream_positions_lock",
        "load_persisted_state",
        "_esm_backoff_until",
        "_send_ddb_stream_failure_record",
    )
    for name in needed:
        if not hasattr(lambda_svc, name):
            from local.shims import ShimNotApplicable

            raise ShimNotApplicable(f"MiniStack's lambda_svc has no {name}")
    lambda_svc._poll_dynamodb_streams = poll_dynamodb_streams

    restore = lambda_svc.load_persisted_state

    def load_persisted_state(data: Any) -> None:
        restore(data)
        rewind_restored_stream_positions(lambda_svc)

    lambda_svc.load_persisted_state = load_persisted_state


def rewind_restored_stream_positions(lambda_svc: Any) -> None:
    """Point every restored DynamoDB stream mapping at the start of the (new, empty) stream."""
    with lambda_svc._dynamodb_stream_positions_lock:
        for key in list(lambda_svc._dynamodb_stream_positions._data):
            lambda_svc._dynamodb_stream_positions._data[key] = 0
