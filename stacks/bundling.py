"""Lambda code assets without Docker.

- The function code is the ``functions`` package only: the repository root filtered down to
  ``functions/**`` (no tests, no venv, no worker), so the zip is small and ``import functions.…``
  works from the zip root exactly as in the repository. Bundling copies it and writes its bytecode
  (as for the layer below: ``/var/task`` is read-only too); skipped bundling stages the sources.
- The third-party dependencies of ``pyproject.toml`` go into one Lambda layer, built on the host by
  ``pip install --platform manylinux2014_x86_64 --only-binary=:all:`` (wheels for the Lambda
  platform, whatever the host is): a jsii ``ILocalBundling``, so CDK never reaches for Docker.
  Building it needs PyPI (or a pip index/cache) and happens at synth when bundling is on.
  The layer ships its bytecode: ``/opt`` is read-only in Lambda, so without ``.pyc`` files every cold
  start compiles boto3, botocore, Powertools and pydantic from source (several times the import
  itself). pip writes none (``--no-compile``); ``compileall`` writes them as *unchecked-hash* pycs,
  which Python uses without comparing source modification times (the asset zip does not keep them).
- Skipping bundling: the standard context ``aws:cdk:bundling-stacks`` set to ``[]`` makes CDK skip
  every bundling step; the layer asset then points at a placeholder directory. The infra tests and
  ``make synth`` (without ``--bundle``) do this, so they stay fast and offline. ``cdk deploy`` sets the
  context itself to the stacks it deploys, so a real deployment always bundles.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = Path(__file__).resolve().parent / "layer"

PLATFORM = "manylinux2014_x86_64"
ARCHITECTURE = lambda_.Architecture.X86_64
# The one Python of the project: tooling, tests, MiniStack's Lambda executor, the Lambda runtime and the
# worker image (Dockerfile) all run 3.11, the interpreter the development machines and CI have.
RUNTIME = lambda_.Runtime.PYTHON_3_11
PYTHON_VERSION = "3.11"

# Glob patterns applied in order over the repository root (the later one wins, like .gitignore).
FUNCTION_CODE_EXCLUDES = [
    "*",
    ".*",
    "!functions",
    "!functions/**",
    "functions/worker",
    "functions/worker/**",
    "**/__pycache__",
    "**/*.pyc",
]


def function_code(*, bundle: bool) -> lambda_.Code:
    """The ``functions`` package as a Lambda code asset (no dependencies inside): with its bytecode
    when the stack is bundled (``Stack.bundling_required``), else the filtered sources. (A bundled
    asset whose bundling CDK skips would stage the whole repository, excludes ignored.)"""
    if not bundle:
        return lambda_.Code.from_asset(str(ROOT), exclude=FUNCTION_CODE_EXCLUDES)
    return lambda_.Code.from_asset(
        str(ROOT),
        exclude=FUNCTION_CODE_EXCLUDES,
        asset_hash_type=AssetHashType.SOURCE,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.11"),
            local=FunctionCodeBundling(),
        ),
    )


def _function_code_ignore(directory: str, names: list[str]) -> set[str]:
    # FUNCTION_CODE_EXCLUDES for a copy of functions/: no worker, no hidden files, no bytecode.
    top = Path(directory) == ROOT / "functions"
    bytecode = {name for name in names if name == "__pycache__" or name.endswith(".pyc")}
    hidden = {name for name in names if name.startswith(".")}
    return bytecode | hidden | ({"worker"} & set(names) if top else set())


@jsii.implements(ILocalBundling)
class FunctionCodeBundling:
    """Copies the ``functions`` package into ``<output>/functions`` and byte-compiles it."""

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        target = Path(output_dir)
        shutil.copytree(ROOT / "functions", target / "functions", ignore=_function_code_ignore)
        compile_bytecode(target)
        return True


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies (``[project].dependencies``), the layer's content."""
    with pyproject.open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def pip_command(requirements: list[str], target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-conflicts",
        "--no-compile",
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]


def compile_command(target: Path) -> list[str] | None:
    """``compileall`` of ``target`` into unchecked-hash pycs for the Lambda runtime's Python, or None
    when this interpreter is another version (its pycs would be named for it and never read)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON_VERSION:
        return None
    return [
        sys.executable,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(target),
    ]


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Installs the requirements for the Lambda platform into ``<output>/python`` on the host and
    byte-compiles them."""

    def __init__(self, requirements: list[str]) -> None:
        self.requirements = requirements

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        target = Path(output_dir) / "python"
        subprocess.run(pip_command(self.requirements, target), check=True)  # noqa: S603 - our own pip
        compile_bytecode(target)
        return True


def compile_bytecode(target: Path) -> None:
    """Write the pycs of every module under ``target`` (see the module docstring): the layer's and
    the function code's."""
    command = compile_command(target)
    if command is None:
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        sys.stderr.write(f"bundling: Python {host} is not the runtime's {PYTHON_VERSION}: no bytecode\n")
        return
    # Not check=True: a file that does not compile (a package's example in old syntax) stays source
    # only, as with pip's own compile step; it cannot be imported either way.
    # Next to the sources, where Lambda's Python looks, whatever this shell's PYTHONPYCACHEPREFIX.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    subprocess.run(command, check=False, env=environment)  # noqa: S603 - our own interpreter


def dependencies_layer_code(requirements: list[str] | None = None) -> lambda_.Code:
    """The dependencies layer asset, bundled locally with pip; its hash is the requirement list."""
    requirements = requirements or runtime_requirements()
    digest = hashlib.sha256("\n".join([PLATFORM, PYTHON_VERSION, *requirements]).encode()).hexdigest()
    return lambda_.Code.from_asset(
        str(LAYER_SOURCE),
        asset_hash=digest,
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.11"),
            local=PipLayerBundling(requirements),
        ),
    )
