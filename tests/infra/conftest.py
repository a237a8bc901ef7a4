"""The CDK app synthesized once per session (both stages, bundling skipped), and template helpers.

Every infra test module carries ``xdist_group("infra")`` so that under ``pytest -n 2 --dist loadgroup``
all of them run in one worker and share one synth (~30 s for both stages).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stacks.names import Names, Stage

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass
class Synthesized:
    stage: Stage
    names: Names
    assembly_dir: Path
    template: dict[str, Any]
    assets: dict[str, Any]
    manifest: dict[str, Any]
    _by_type: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == kind}

    def one(self, kind: str, **props: Any) -> tuple[str, dict[str, Any]]:
        """The single resource of ``kind`` whose properties include ``props``."""
        found = [
            (lid, r)
            for lid, r in self.of_type(kind).items()
            if all(r["Properties"].get(k) == v for k, v in props.items())
        ]
        assert len(found) == 1, f"expected one {kind} with {props}, found {[lid for lid, _ in found]}"
        return found[0]

    def logical_id(self, kind: str, **props: Any) -> str:
        return self.one(kind, **props)[0]

    def file_asset(self, object_key: str) -> Path:
        """The file a DefinitionS3Location / Code S3Key points at, inside the assembly."""
        for asset in self.assets["files"].values():
            for destination in asset["destinations"].values():
                if destination["objectKey"] == object_key:
                    return self.assembly_dir / asset["source"]["path"]
        raise AssertionError(f"no file asset with object key {object_key}")

    def messages(self) -> list[dict[str, Any]]:
        """Error/warning/info metadata entries recorded for the stack (cdk-nag findings land here)."""
        entries = []
        for artifact in self.manifest["artifacts"].values():
            for path, items in artifact.get("metadata", {}).items():
                entries.extend({"path": path, **item} for item in items)
        return entries


def _synth(stage: Stage, outdir: Path) -> Synthesized:
    return _synth_with(stage, outdir, None)


def _synth_with(stage: Stage, outdir: Path, context: dict[str, Any] | None) -> Synthesized:
    from stacks.app import build_app

    app, stack = build_app(stage.value, outdir=outdir, bundle=False, context=context)
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    assembly_dir = Path(assembly.directory)
    assets_file = next(assembly_dir.glob(f"{artifact.stack_name}.assets.json"))
    return Synthesized(
        stage=stage,
        names=stack.config.names,
        assembly_dir=assembly_dir,
        template=json.loads(Path(artifact.template_full_path).read_text()),
        assets=json.loads(assets_file.read_text()),
        manifest=json.loads((assembly_dir / "manifest.json").read_text()),
    )


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[Stage, Synthesized]:
    out = tmp_path_factory.mktemp("cdk.out")
    return {stage: _synth(stage, out / stage.value) for stage in Stage}


@pytest.fixture(scope="session")
def prod(synthesized: dict[Stage, Synthesized]) -> Synthesized:
    return synthesized[Stage.PROD]


@pytest.fixture(scope="session")
def local(synthesized: dict[Stage, Synthesized]) -> Synthesized:
    return synthesized[Stage.LOCAL]


@pytest.fixture(params=list(Stage), ids=lambda s: s.value)
def each(request: pytest.FixtureRequest, synthesized: dict[Stage, Synthesized]) -> Synthesized:
    """Runs the test once per stage."""
    return synthesized[request.param]


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}
