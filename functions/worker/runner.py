"""The worker process's loop: long-poll the work queue, run one job at a time, report, repeat.

Per work item (docs/data-model.md "Work item", docs/worker-contract.md):

1. Record the task token on the job (condition ``status = RUNNING``); the answer says whether it was
   cancelled or is over budget already. A job that is not RUNNING is not waited for: drop the item.
2. While the job runs, a heartbeat thread sends ``SendTaskHeartbeat`` and extends the message's
   visibility every ``heartbeat_seconds``, as long as the job makes progress. A token Step
   Functions no longer knows (cancelled, timed out) stops the job at the next record.
3. Report the result (success, ``BudgetExceeded``, ``JobCancelled`` or another error) and delete
   the message. A job abandoned on shutdown (SIGTERM, e.g. a Spot interruption) is not reported:
   its message is made visible again and the next worker resumes it from its checkpoint. A crash
   leaves the message to reappear after its visibility timeout; after ``max_attempts`` receipts
   the job is failed rather than retried forever.

ECS task scale-in protection (functions/worker/protection.py): the service scales on the queue's
depth, so when one job ends ECS may stop any task, including one in the middle of another job.
From receiving a work item until its result is reported (or it is dropped, released on shutdown
or left after a crash) the worker keeps its task protected: ``acquire`` on receipt, ``renew``
with the heartbeats while the job runs, ``release`` when idle again. A stalled job sends no
heartbeats, so its protection is not renewed and lapses. Without ``ECS_AGENT_URI`` (locally) this
is a no-op, and a protection call that fails is logged and never fails the job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from functions.common.clock import now_iso
from functions.common.observability import logger
from functions.worker.models import JobResult, Outcome, WorkItem
from functions.worker.protection import NoTaskProtection, TaskProtection
from functions.worker.reporter import TaskGone, TaskReporter
from functions.worker.repository import JobStore
from functions.worker.service import BUDGET_EXCEEDED, JOB_CANCELLED, GenerationService, StopSignal

SHUTDOWN = "shutdown"
TASK_GONE = "task gone"
WORKER_ERROR = "WorkerError"
INVALID_WORK_ITEM = "InvalidWorkItem"
RETRY_DELAY_SECONDS = 30
MIN_BEAT_GAP_SECONDS = 1.0


def quietly(call: Callable[[], None], what: str) -> None:
    """Run a task protection call; whatever goes wrong is a warning, never the job's failure."""
    try:
        call()
    except Exception as error:
        logger.warning(
            "Task scale-in protection failed; carrying on",
            call=what,
            error=f"{type(error).__name__}: {error}",
        )


class Progress:
    """When the job last moved (a record generated, a part exported), and when a batch committed."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.last = monotonic()
        self.batch_committed = threading.Event()

    def touch(self) -> None:
        self.last = self._monotonic()

    def batch_done(self) -> None:
        self.touch()
        self.batch_committed.set()

    def idle_for(self) -> float:
        return self._monotonic() - self.last


class Heartbeat:
    """A daemon thread that heartbeats one task and keeps its message invisible."""

    def __init__(
        self,
        *,
        reporter: TaskReporter,
        task_token: str,
        extend_visibility: Callable[[], None],
        progress: Progress,
        interval: float,
        stall_seconds: float,
        stop: StopSignal,
        min_gap_seconds: float = MIN_BEAT_GAP_SECONDS,
        protection: TaskProtection | None = None,
    ) -> None:
        self._reporter = reporter
        self._protection = protection or NoTaskProtection()
        self._token = task_token
        self._extend = extend_visibility
        self._progress = progress
        self._interval = interval
        self._stall = stall_seconds
        self._job_stop = stop
        self._min_gap = min_gap_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._progress.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._progress.batch_committed.set()  # wake the thread
        self._thread.join(timeout=10)

    def beat(self) -> None:
        if self._progress.idle_for() > self._stall:
            logger.warning("No progress: heartbeats stop so the heartbeat timeout ends the job")
            return
        try:
            self._reporter.heartbeat(self._token)
        except TaskGone as gone:
            logger.info("The task is no longer waiting; stopping the job", reason=str(gone))
            self._job_stop.request(TASK_GONE)
            return
        except Exception:
            logger.exception("Heartbeat failed; retrying at the next beat")
        try:
            self._extend()
        except Exception:
            logger.exception("Could not extend the work item's visibility")
        quietly(self._protection.renew, "renew")

    def _run(self) -> None:
        """Beat every ``interval``, and after each committed batch (at most one beat a second)."""
        last_beat = 0.0
        while not self._done.is_set():
            batch = self._progress.batch_committed.wait(self._interval)
            self._progress.batch_committed.clear()
            if self._done.is_set():
                return
            if batch and time.monotonic() - last_beat < self._min_gap:
                continue
            self.beat()
            last_beat = time.monotonic()


class WorkerLoop:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        jobs: JobStore,
        reporter: TaskReporter,
        service: GenerationService,
        progress: Progress,
        heartbeat_seconds: float = 30,
        stall_seconds: float = 900,
        visibility_timeout_seconds: int = 300,
        poll_wait_seconds: int = 20,
        max_attempts: int = 3,
        min_beat_gap_seconds: float = MIN_BEAT_GAP_SECONDS,
        protection: TaskProtection | None = None,
    ) -> None:
        self._sqs = sqs
        self._protection = protection or NoTaskProtection()
        self._queue_url = queue_url
        self._jobs = jobs
        self._reporter = reporter
        self._service = service
        self._progress = progress
        self._heartbeat_seconds = heartbeat_seconds
        self._stall_seconds = stall_seconds
        self._visibility = visibility_timeout_seconds
        self._wait = poll_wait_seconds
        self._max_attempts = max_attempts
        self._min_beat_gap = min_beat_gap_seconds
        self.stop = StopSignal()
        self._job_stop: StopSignal | None = None

    # ----------------------------------------------------------- lifecycle

    def shutdown(self, reason: str = SHUTDOWN) -> None:
        """Stop taking work and abandon the current batch safely (safe from a signal handler)."""
        self.stop.request(reason)
        job_stop = self._job_stop
        if job_stop is not None:
            job_stop.request(SHUTDOWN)

    def run_forever(self) -> None:
        logger.info("Worker started", queue_url=self._queue_url)
        while not self.stop.requested:
            try:
                self.poll_once()
            except Exception:
                # The queue or the job table is unreachable for now: wait, then poll again.
                logger.exception("Polling the work queue failed")
                time.sleep(min(self._heartbeat_seconds, 5))
        logger.info("Worker stopped", reason=self.stop.reason)

    def poll_once(self) -> int:
        """Receive at most one work item and handle it; answer how many were handled."""
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self._wait,
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = answer.get("Messages", [])
        for message in messages:
            if self.stop.requested:
                self._release(message, 0)
                continue
            self.handle(message)
        return len(messages)

    # ------------------------------------------------------------ one item

    def handle(self, message: dict[str, Any]) -> JobResult | None:
        """Handle one work item with the task protected from scale-in until it is done with."""
        quietly(self._protection.acquire, "acquire")
        try:
            return self._handle(message)
        finally:
            quietly(self._protection.release, "release")

    def _handle(self, message: dict[str, Any]) -> JobResult | None:
        item = self._parse(message)
        if item is None:
            return None
        if item.records_token:
            control = self._jobs.record_task_token(item.job_id, item.task_token, now_iso())
        else:
            control = self._jobs.read_control(item.job_id)
        if control is None or not control.running:
            logger.info("Dropping a work item of a job that is not running", job_id=item.job_id)
            self._delete(message)
            return None
        if item.records_token and (control.cancel_requested_at or control.budget_exceeded):
            error = JOB_CANCELLED if control.cancel_requested_at else BUDGET_EXCEEDED
            result = JobResult(outcome=Outcome.FAILED, error=error, cause="requested before the job started")
            self._dispose(message, item, result)
            return result
        job_stop = StopSignal()
        self._job_stop = job_stop
        if self.stop.requested:
            job_stop.request(SHUTDOWN)
        try:
            with Heartbeat(
                reporter=self._reporter,
                task_token=item.task_token,
                extend_visibility=lambda: self._release(message, self._visibility),
                progress=self._progress,
                interval=self._heartbeat_seconds,
                stall_seconds=self._stall_seconds,
                stop=job_stop,
                min_gap_seconds=self._min_beat_gap,
                protection=self._protection,
            ):
                result = self._service.run(item, control, job_stop)
        except Exception as error:
            logger.exception("Processing the job crashed", job_id=item.job_id)
            self._after_crash(message, item, error)
            return None
        finally:
            self._job_stop = None
        try:
            self._dispose(message, item, result)
        except Exception:
            # The answer did not get through (after the client's own retries). Keep the item: the
            # next attempt finds every batch committed and answers again.
            logger.exception("Reporting the result failed; the work item will be retried", job_id=item.job_id)
            self._release(message, RETRY_DELAY_SECONDS)
        return result

    def _parse(self, message: dict[str, Any]) -> WorkItem | None:
        body: Any = None
        try:
            body = json.loads(message["Body"])
            return WorkItem.model_validate(body)
        except (ValueError, ValidationError) as error:
            reason = str(error)[:2000]
        token = body.get("task_token") if isinstance(body, dict) else None
        logger.error("Invalid work item", error=reason[:500])
        if isinstance(token, str) and token:
            self._report(lambda: self._reporter.failure(token, INVALID_WORK_ITEM, reason))
        self._delete(message)
        return None

    def _dispose(self, message: dict[str, Any], item: WorkItem, result: JobResult) -> None:
        logger.info(
            "Job processed",
            job_id=item.job_id,
            kind=item.kind,
            partition=item.partition,
            outcome=result.outcome.value,
            error=result.error,
            records_generated=result.records_generated,
            records_failed=result.records_failed,
        )
        if result.outcome is Outcome.SUCCEEDED:
            self._report(lambda: self._reporter.success(item.task_token, result.success_output()))
        elif result.outcome is Outcome.FAILED:
            error, cause = result.error or WORKER_ERROR, result.cause or ""
            self._report(lambda: self._reporter.failure(item.task_token, error, cause))
        elif result.cause == SHUTDOWN:
            self._release(message, 0)  # the next worker resumes it from the checkpoint
            return
        self._delete(message)

    def _after_crash(self, message: dict[str, Any], item: WorkItem, error: Exception) -> None:
        receipts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if receipts >= self._max_attempts:
            cause = f"{type(error).__name__}: {error}"[:2000]
            self._report(lambda: self._reporter.failure(item.task_token, WORKER_ERROR, cause))
            self._delete(message)
        else:
            self._release(message, RETRY_DELAY_SECONDS)

    # ------------------------------------------------------------- helpers

    def _report(self, send: Callable[[], None]) -> None:
        try:
            send()
        except TaskGone as gone:
            logger.info("The task was no longer waiting for this answer", reason=str(gone))

    def _delete(self, message: dict[str, Any]) -> None:
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _release(self, message: dict[str, Any], seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=seconds
        )
