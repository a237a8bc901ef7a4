"""The state machines as the CDK app synthesizes them: their names and ``DefinitionSubstitutions``,
resolved to the resources a MiniStack test fixture creates, so tests/statemachines cannot drift from
the deployment.

``synthesize_machines`` synthesizes one stage of the app (``stacks.synth``, bundling skipped, ~30-60 s)
and keeps, per ASL file, the state machine's name and raw substitutions plus the template resources
they refer to. The result is cached (pytest's cache) under a hash of what the template depends on
(stacks/, statemachines/, pyproject.toml, the aws-cdk-lib version, the stage and context), so running
the test files one at a time synthesizes once.

``Resolver`` turns a raw substitution into the value CloudFormation would give it, in the emulator's
account: a ``Ref``/``Fn::GetAtt`` to a table, bucket, bus, queue or state machine becomes its physical
name, URL or ARN. Every resource of the app has a fixed physical name (stacks/names.py), so the
fixture creates its resources under the same names and the two meet.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from stacks.names import Names, Stage

REPO = Path(__file__).resolve().parents[2]
STATEMACHINES_DIR = REPO / "statemachines"
CACHE_KEY = "plot-palette/synthesized-state-machines"
# The property holding each referenced resource type's physical name.
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Events::EventBus": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
}


class Cache(Protocol):
    """What is used of pytest's ``config.cache``."""

    def get(self, key: str, default: Any) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class SynthesizedMachine:
    name: str
    substitutions: dict[str, Any]  # raw template values: strings or intrinsic functions


@dataclass(frozen=True)
class SynthesizedMachines:
    names: Names
    machines: dict[str, SynthesizedMachine]  # by ASL file stem
    resources: dict[str, dict[str, Any]]  # the template resources the substitutions refer to


def synthesize_machines(
    stage: Stage, context: Mapping[str, str], cache: Cache | None = None
) -> SynthesizedMachines:
    """The state machines of ``stage`` synthesized with ``context``; from ``cache`` when unchanged."""
    key = _fingerprint(stage, context)
    cached = cache.get(CACHE_KEY, None) if cache is not None else None
    if not (cached and cached.get("fingerprint") == key):
        cached = {"fingerprint": key, **_synthesize(stage, context)}
        if cache is not None:
            cache.set(CACHE_KEY, cached)
    machines = {stem: SynthesizedMachine(**machine) for stem, machine in cached["machines"].items()}
    return SynthesizedMachines(Names.for_stage(stage), machines, cached["resources"])


def _fingerprint(stage: Stage, context: Mapping[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([stage.value, dict(sorted(context.items()))]).encode())
    digest.update(metadata.version("aws-cdk-lib").encode())
    sources = [REPO / "pyproject.toml", *(REPO / "stacks").rglob("*"), *STATEMACHINES_DIR.rglob("*")]
    for path in sorted(p for p in sources if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _synthesize(stage: Stage, context: Mapping[str, str]) -> dict[str, Any]:
    from stacks.synth import synth_stage

    with tempfile.TemporaryDirectory(prefix="cdk.out-") as out:
        assembly = synth_stage(stage, Path(out), context=dict(context))
        template = json.loads((assembly / f"{Names.for_stage(stage).stack}.template.json").read_text())
        return _machines_of(template, assembly)


def _machines_of(template: dict[str, Any], assembly: Path) -> dict[str, Any]:
    """Each AWS::StepFunctions::StateMachine by the ASL file its definition asset is a copy of."""
    files = {path.read_text(): path.name.removesuffix(".asl.json") for path in asl_files()}
    resources = template["Resources"]
    machines: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        props = resource["Properties"]
        definition = _asset_text(assembly, props["DefinitionS3Location"]["Key"])
        if definition not in files:
            raise AssertionError(f"{logical_id}'s definition is none of the files in statemachines/")
        machines[files[definition]] = {
            "name": props["StateMachineName"],
            "substitutions": props.get("DefinitionSubstitutions", {}),
        }
    referenced = set().union(*(_references(m["substitutions"]) for m in machines.values()))
    return {"machines": machines, "resources": {lid: resources[lid] for lid in sorted(referenced)}}


def _asset_text(assembly: Path, object_key: str) -> str:
    for assets_file in assembly.glob("*.assets.json"):
        for asset in json.loads(assets_file.read_text())["files"].values():
            if any(d["objectKey"] == object_key for d in asset["destinations"].values()):
                return (assembly / asset["source"]["path"]).read_text()
    raise AssertionError(f"no file asset with object key {object_key}")


def _references(value: Any) -> set[str]:
    """The logical ids a template value refers to (pseudo parameters excluded)."""
    if isinstance(value, list):
        return set().union(set(), *(_references(v) for v in value))
    if not isinstance(value, dict):
        return set()
    found = set().union(set(), *(_references(v) for v in value.values()))
    if isinstance(value.get("Ref"), str) and not value["Ref"].startswith("AWS::"):
        found.add(value["Ref"])
    if isinstance(value.get("Fn::GetAtt"), list):
        found.add(value["Fn::GetAtt"][0])
    return found


def asl_files() -> list[Path]:
    return sorted(STATEMACHINES_DIR.glob("*.asl.json"))


@dataclass(frozen=True)
class Resolver:
    """Template values -> what CloudFormation would make of them in the emulator's account."""

    resources: dict[str, dict[str, Any]]
    account: str
    region: str
    queue_url: Callable[[str], str]  # queue name -> its URL, asked of the emulator

    def resolve(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            [(function, argument)] = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                return self._get_att(*argument)
            if function == "Fn::Join":
                separator, parts = argument
                return str(separator).join(self.resolve(part) for part in parts)
        raise ValueError(f"cannot resolve template value {value!r}")

    def _ref(self, logical_id: str) -> str:
        pseudo = {"AWS::AccountId": self.account, "AWS::Region": self.region, "AWS::Partition": "aws"}
        if logical_id in pseudo:
            return pseudo[logical_id]
        kind, name = self._named(logical_id)
        if kind == "AWS::SQS::Queue":
            return self.queue_url(name)
        if kind == "AWS::StepFunctions::StateMachine":
            return self._arn(kind, name)
        return name  # tables, buckets and buses: Ref is the name

    def _get_att(self, logical_id: str, attribute: str) -> str:
        kind, name = self._named(logical_id)
        if attribute == "Arn":
            return self._arn(kind, name)
        if (kind, attribute) in {("AWS::SQS::Queue", "QueueUrl"), ("AWS::SQS::Queue", "QueueName")}:
            return self.queue_url(name) if attribute == "QueueUrl" else name
        if (kind, attribute) == ("AWS::StepFunctions::StateMachine", "Name"):
            return name
        raise ValueError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute} ({kind})")

    def _named(self, logical_id: str) -> tuple[str, str]:
        resource = self.resources[logical_id]
        kind = resource["Type"]
        if kind not in NAME_PROPERTY:
            raise ValueError(f"{logical_id} is a {kind}: the state machine tests create none")
        return kind, self.resolve(resource["Properties"][NAME_PROPERTY[kind]])

    def _arn(self, kind: str, name: str) -> str:
        where = f"{self.region}:{self.account}"
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{where}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{where}:{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{where}:event-bus/{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{where}:stateMachine:{name}",
        }[kind]
