# The generation worker: one process per ECS Fargate (Spot) task, `python -m functions.worker`.
# Build from the repository root: docker build -t plot-palette-worker .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs to install: the worker imports functions/ (stacks/ and local/ are
# declared packages, so they are copied too but never imported at run time).
COPY pyproject.toml README.md ./
COPY functions ./functions
COPY stacks ./stacks
COPY local ./local
RUN pip install ".[worker]" \
    && useradd --system --uid 10001 --home-dir /app worker

USER worker

# ECS sends SIGTERM (a Spot interruption gives two minutes; set the container's stopTimeout to 120):
# the worker abandons the batch in flight, makes its work item visible again and exits.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "functions.worker"]
