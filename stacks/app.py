"""The CDK app: ``python -m stacks.app`` (what cdk.json runs) synthesizes one stage.

The stage comes from the context value ``stage`` (``prod`` by default, or ``local``); see
docs/deploy.md for every context value. ``build_app`` is also what ``stacks.synth`` and the infra
tests call in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import Config
from stacks.plot_palette_stack import PlotPaletteStack

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}

# CDK feature flags, here rather than in cdk.json so in-process synth (tests, stacks.synth) and the
# CLI build the same templates.
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
    "@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2": True,
    "@aws-cdk/aws-ecs:enableImdsBlockingDeprecatedFeature": False,
    "@aws-cdk/aws-ecs:disableEcsImdsBlocking": True,
}


def build_app(
    stage: str | None = None,
    *,
    outdir: str | Path | None = None,
    context: dict[str, Any] | None = None,
    bundle: bool = True,
) -> tuple[cdk.App, PlotPaletteStack]:
    """The app with the stack of one stage; cdk-nag's AwsSolutions checks run at synth."""
    ctx: dict[str, Any] = {**FEATURE_FLAGS, **(context or {})}
    if stage is not None:
        ctx["stage"] = stage
    if not bundle:
        ctx.update(SKIP_BUNDLING)
    app = cdk.App(outdir=str(outdir) if outdir is not None else None, context=ctx)
    config = Config.from_context(app.node)
    local = config.is_local
    stack = PlotPaletteStack(
        app,
        config.names.stack,
        config=config,
        description=f"plot-palette backend ({config.stage.value})",
        # The local stage stays plain CloudFormation for the emulator: no CDK metadata resource and no
        # bootstrap-version rule (the local deployer provides the asset bucket itself).
        analytics_reporting=not local,
        synthesizer=cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=not local),
        termination_protection=not local,
    )
    cdk.Tags.of(app).add("project", "plot-palette")
    cdk.Tags.of(app).add("stage", config.stage.value)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
