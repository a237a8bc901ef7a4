"""Reading one job for its owner: shared by the jobs and dashboard services.

Its own module so the dashboard handler does not import the jobs service (events, idempotency,
exports) at cold start (``benchmarks/cold_start.py``).
"""

from __future__ import annotations

import re

from functions.common.errors import ForbiddenError, NotFoundError
from functions.jobs.models import JobRecord
from functions.jobs.repository import JobsRepository

JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class JobAccess:
    """Reads one job for its owner."""

    def __init__(self, jobs: JobsRepository) -> None:
        self._jobs = jobs

    def owned_job(self, user_id: str, job_id: str) -> JobRecord:
        """The caller's job in one read: 404 when missing (or not a job id), 403 when another user's."""
        job = self._jobs.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            raise NotFoundError("Job not found")
        if not job.is_owned_by(user_id):
            raise ForbiddenError("Forbidden")
        return job
