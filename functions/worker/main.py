"""The worker's composition root: settings → clients → stores → service → loop; SIGTERM handling.

``python -m functions.worker`` runs one worker process (the ECS task's command). The local
runtime starts ``WORKER_PROCESSES`` of them.
"""

from __future__ import annotations

import signal
from types import FrameType

from functions.common.aws import client
from functions.common.observability import logger
from functions.common.settings import load_settings
from functions.templates.repository import TemplateRepository
from functions.worker.concurrency import AimdPolicy, ConcurrencyController, RateBudget
from functions.worker.exporters import Exporter
from functions.worker.pricing import FargatePrice
from functions.worker.protection import EcsAgentTaskProtection, NoTaskProtection, TaskProtection
from functions.worker.providers import BedrockProvider, ModelProvider, OfflineBehaviour, OfflineProvider
from functions.worker.rendering import PromptRenderer, RenderLimits
from functions.worker.reporter import StepFunctionsTaskReporter
from functions.worker.repository import CostStore, JobStore, OutputStore, S3SeedSource
from functions.worker.runner import Progress, WorkerLoop
from functions.worker.service import GenerationService
from functions.worker.settings import WorkerSettings


def build_provider(settings: WorkerSettings) -> ModelProvider:
    if settings.model_provider == "offline":
        return OfflineProvider(
            OfflineBehaviour(
                latency_ms=settings.offline_latency_ms,
                jitter_ms=settings.offline_jitter_ms,
                rpm=settings.offline_rpm,
            )
        )
    return BedrockProvider(client("bedrock-runtime"), max_tokens=settings.bedrock_max_tokens)


def build_controller(settings: WorkerSettings, provider: ModelProvider) -> ConcurrencyController:
    budgets = {
        model_id: RateBudget(requests_per_minute=limit.rpm, tokens_per_minute=limit.tpm)
        for model_id, limit in settings.model_rate_limits.items()
    }
    return ConcurrencyController(
        provider, policy=AimdPolicy(max_limit=settings.model_max_concurrency), budgets=budgets
    )


def build_protection(settings: WorkerSettings) -> TaskProtection:
    """Scale-in protection through the ECS agent inside a task; nothing where there is no agent."""
    if not settings.ecs_agent_uri:
        return NoTaskProtection()
    return EcsAgentTaskProtection(settings.ecs_agent_uri, expires_in_minutes=settings.protection_minutes)


def build_worker(settings: WorkerSettings) -> WorkerLoop:
    dynamodb, s3 = client("dynamodb"), client("s3")
    outputs = OutputStore(s3, settings.bucket_name)
    jobs = JobStore(dynamodb, settings.jobs_table)
    progress = Progress()
    provider = build_provider(settings)
    service = GenerationService(
        jobs=jobs,
        costs=CostStore(dynamodb, settings.cost_tracking_table),
        outputs=outputs,
        seeds=S3SeedSource(s3, settings.bucket_name),
        templates=TemplateRepository(dynamodb, settings.templates_table),
        provider=provider,
        calls=build_controller(settings, provider),
        renderer=PromptRenderer(RenderLimits(settings.prompt_max_chars, settings.prompt_render_seconds)),
        exporter=Exporter(outputs),
        fargate=FargatePrice.for_task(settings.task_cpu, settings.task_memory_mib),
        cost_ttl_days=settings.cost_ttl_days,
        on_progress=progress.touch,
        on_batch=progress.batch_done,
    )
    return WorkerLoop(
        sqs=client("sqs"),
        queue_url=settings.work_queue_url,
        jobs=jobs,
        reporter=StepFunctionsTaskReporter(client("stepfunctions")),
        service=service,
        progress=progress,
        heartbeat_seconds=settings.heartbeat_seconds,
        stall_seconds=settings.stall_seconds,
        visibility_timeout_seconds=settings.visibility_timeout_seconds,
        poll_wait_seconds=settings.poll_wait_seconds,
        max_attempts=settings.max_attempts,
        protection=build_protection(settings),
    )


def install_signal_handlers(worker: WorkerLoop) -> None:
    def _handle(signum: int, frame: FrameType | None) -> None:
        worker.shutdown()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)


def main() -> None:
    settings = load_settings(WorkerSettings)
    worker = build_worker(settings)
    install_signal_handlers(worker)
    logger.info("Generation worker starting", provider=settings.model_provider)
    worker.run_forever()
