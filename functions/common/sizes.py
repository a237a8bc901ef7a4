"""Worker task sizes (the job's ``task_size``), shared by the API, the worker's billing and the CDK app.

In AWS each size is its own ECS Fargate Spot service with its own work queue, scaled on that queue's
depth (stacks/worker.py); the lifecycle sends a job's work items to the queue of its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskSize(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    XLARGE = "xlarge"


DEFAULT_TASK_SIZE = TaskSize.MEDIUM


@dataclass(frozen=True)
class TaskShape:
    cpu_units: int  # 1024 = 1 vCPU, as an ECS task definition writes it
    memory_mib: int


TASK_SHAPES: dict[TaskSize, TaskShape] = {
    TaskSize.SMALL: TaskShape(cpu_units=256, memory_mib=512),
    TaskSize.MEDIUM: TaskShape(cpu_units=512, memory_mib=1024),
    TaskSize.LARGE: TaskShape(cpu_units=1024, memory_mib=2048),
    TaskSize.XLARGE: TaskShape(cpu_units=2048, memory_mib=4096),
}
