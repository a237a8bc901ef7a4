"""Deploy a synthesized CDK cloud assembly (``cdk.out``) onto MiniStack, the way ``cdk deploy`` would.

What the CDK CLI does against a bootstrapped account, done here with boto3 and no Node.js CLI:

- meet the bootstrap expectations of the default synthesizer: the asset bucket
  ``cdk-hnb659fds-assets-{account}-{region}`` exists and SSM ``/cdk-bootstrap/hnb659fds/version``
  is at least what the assembly requires;
- publish the file assets of each stack's asset manifest (directories as deterministic zips, Lambda
  code must be a zip on MiniStack), skipping any whose object is already there (names are content
  hashes, so an unchanged asset is never uploaded twice);
- create the stack, or update it when its template or parameters changed, and wait for the result.

"Redeploys only what changed": an unchanged template is not sent at all (the template hash is
compared with the one recorded at the last deploy), and a changed one goes through UpdateStack, so
CloudFormation touches only the resources whose properties differ.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.emulator import ACCOUNT_ID, REGION

BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION = 21  # what a current `cdk bootstrap` writes; assemblies require >= 6
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

Progress = Callable[[str], None]


class DeployError(RuntimeError):
    """A deploy failed; the message says which resource and why, and what to do."""


@dataclass
class StackArtifact:
    name: str
    template_path: Path
    asset_manifest: Path | None
    template_url: str | None = None  # s3://bucket/key of the template asset, if the synthesizer made one
    dependencies: list[str] = field(default_factory=list)


def _substitute(value: str) -> str:
    return (
        value.replace("${AWS::AccountId}", ACCOUNT_ID)
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::Partition}", "aws")
    )


def read_assembly(assembly: Path) -> list[StackArtifact]:
    """The stacks of a cloud assembly in deployment order (dependencies first)."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    artifacts: dict[str, Any] = manifest.get("artifacts", {})
    stacks: dict[str, StackArtifact] = {}
    for name, artifact in artifacts.items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        props = artifact.get("properties", {})
        asset_manifest = None
        for dep in artifact.get("dependencies", []):
            dep_artifact = artifacts.get(dep, {})
            if dep_artifact.get("type") == "cdk:asset-manifest":
                asset_manifest = assembly / dep_artifact["properties"]["file"]
        stacks[name] = StackArtifact(
            name=props.get("stackName", name),
            template_path=assembly / props["templateFile"],
            asset_manifest=asset_manifest,
            template_url=_substitute(props["stackTemplateAssetObjectUrl"])
            if props.get("stackTemplateAssetObjectUrl")
            else None,
            dependencies=[d for d in artifact.get("dependencies", []) if d in artifacts],
        )
    ordered: list[StackArtifact] = []
    seen: set[str] = set()

    def visit(key: str) -> None:
        if key in seen or key not in stacks:
            return
        seen.add(key)
        for dep in stacks[key].dependencies:
            visit(dep)
        ordered.append(stacks[key])

    for key in stacks:
        visit(key)
    if not ordered:
        raise DeployError(f"{assembly} holds no CloudFormation stack; did the synth succeed?")
    return ordered


def zip_directory(directory: Path) -> bytes:
    """A deterministic zip of ``directory`` (sorted names, fixed timestamps, modes kept)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(directory, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                relative = path.relative_to(directory).as_posix()
                info = zipfile.ZipInfo(relative, date_time=_FIXED_ZIP_TIME)
                info.external_attr = (path.stat().st_mode & 0xFFFF) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def ensure_bootstrap(s3: Any, ssm: Any) -> str:
    """The asset bucket and the bootstrap version parameter the default synthesizer checks."""
    bucket = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{ACCOUNT_ID}-{REGION}"
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    ssm.put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version",
        Value=str(BOOTSTRAP_VERSION),
        Type="String",
        Overwrite=True,
    )
    return bucket


def publish_assets(s3: Any, asset_manifest: Path, progress: Progress) -> int:
    """Upload the file assets of one manifest that are not in their bucket yet; returns how many."""
    manifest = json.loads(asset_manifest.read_text())
    if manifest.get("dockerImages"):
        progress("note: container image assets are not built locally (the worker runs as a local process)")
    uploaded = 0
    for asset_id, asset in manifest.get("files", {}).items():
        source = asset["source"]
        if "path" not in source:
            raise DeployError(f"asset {asset_id} is built by a command; the local stage cannot run it")
        path = asset_manifest.parent / source["path"]
        for destination in asset["destinations"].values():
            bucket = _substitute(destination["bucketName"])
            key = _substitute(destination["objectKey"])
            try:
                s3.head_object(Bucket=bucket, Key=key)
                continue
            except Exception:  # noqa: S110 - missing object: upload below
                pass
            if source.get("packaging") == "zip" or path.is_dir():
                body = zip_directory(path) if path.is_dir() else path.read_bytes()
            else:
                body = path.read_bytes()
            progress(f"  uploading asset {asset.get('displayName', asset_id)} ({len(body) // 1024} KiB)")
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            uploaded += 1
    return uploaded


_FAILED = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE",
           "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED"}  # fmt: skip
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}


def _stack_status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as error:
        if "does not exist" in str(error):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _failure_reasons(cfn: Any, name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except Exception:
        return ""
    reasons = [
        f"{e.get('LogicalResourceId')} ({e.get('ResourceType')}): {e.get('ResourceStatusReason')}"
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("FAILED") and e.get("ResourceStatusReason")
    ]
    return "; ".join(reasons[:5])


def _wait(cfn: Any, name: str, progress: Progress, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        status = _stack_status(cfn, name) or "DELETED"
        if status != last:
            progress(f"  {name}: {status}")
            last = status
        if status in _DONE:
            return status
        if status in _FAILED:
            raise DeployError(
                f"stack {name} ended {status}: {_failure_reasons(cfn, name) or 'no reason given'}. "
                "Fix the template (or delete the state dir to start from scratch) and run again."
            )
        time.sleep(0.3)
    raise DeployError(
        f"stack {name} still {last} after {timeout:.0f} s; see the emulator log in the state dir"
    )


def template_digest(stack: StackArtifact) -> str:
    return hashlib.sha256(stack.template_path.read_bytes()).hexdigest()


def _template_url(s3: Any, stack: StackArtifact, bucket: str) -> str:
    """An S3 URL of the template (TemplateBody is capped at 51,200 bytes, like AWS)."""
    if stack.template_url and stack.template_url.startswith("s3://"):
        bucket_and_key = stack.template_url.removeprefix("s3://")
    else:
        body = stack.template_path.read_bytes()
        key = f"{hashlib.sha256(body).hexdigest()}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        bucket_and_key = f"{bucket}/{key}"
    return f"https://s3.{REGION}.amazonaws.com/{bucket_and_key}"


_RECREATE = {"ROLLBACK_COMPLETE", "CREATE_FAILED"}  # a failed create: nothing in it worth keeping
_STUCK = {"ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"}


def plan_stack(status: str | None, digest: str, previous_digest: str | None) -> str:
    """What a deploy does with one stack, from its status and template digests.

    ``"create"``: no such stack. ``"recreate"``: a create failed earlier (delete it, then create).
    ``"skip"``: the template is byte for byte the one of the last successful deploy and the stack
    is healthy. ``"update"``: anything else (changed template, no record of the last deploy, a
    stack left UPDATE_ROLLBACK_COMPLETE); CloudFormation then changes only what differs.
    A stack that cannot be updated raises DeployError saying what to do.
    """
    if status in (None, "DELETE_COMPLETE"):
        return "create"
    if status in _RECREATE:
        return "recreate"
    if status in _STUCK:
        raise DeployError(
            f"the stack is {status} and cannot be updated; delete the state dir to start from scratch"
        )
    if status.endswith("_IN_PROGRESS"):
        raise DeployError(
            f"the stack is {status}: an earlier deploy did not finish (the emulator was stopped in the "
            "middle of it); delete the state dir to start from scratch"
        )
    if digest == previous_digest and status in _DONE:
        return "skip"
    return "update"


def deploy_stack(
    cfn: Any,
    stack: StackArtifact,
    *,
    template_url: str,
    previous_digest: str | None,
    progress: Progress,
    timeout: float = 300.0,
) -> tuple[dict[str, str], bool]:
    """Create or update one stack; returns (outputs, whether anything was sent to CloudFormation)."""
    status = _stack_status(cfn, stack.name)
    try:
        plan = plan_stack(status, template_digest(stack), previous_digest)
    except DeployError as error:
        raise DeployError(f"{stack.name}: {error}") from error
    changed = plan != "skip"
    if plan == "recreate":
        progress(f"  {stack.name} is {status} from an earlier attempt: deleting it first")
        cfn.delete_stack(StackName=stack.name)
        _wait_deleted(cfn, stack.name, timeout)
        plan = "create"
    kwargs = {
        "StackName": stack.name,
        "TemplateURL": template_url,
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    }
    if plan == "create":
        progress(f"  creating stack {stack.name}")
        cfn.create_stack(**kwargs)
        _wait(cfn, stack.name, progress, timeout)
    elif plan == "skip":
        progress(f"  {stack.name} unchanged since the last deploy")
    else:
        progress(f"  updating stack {stack.name}")
        try:
            cfn.update_stack(**kwargs)
        except Exception as error:
            if "No updates are to be performed" not in str(error):
                raise
            progress(f"  {stack.name}: no updates are to be performed")
            changed = False
        else:
            _wait(cfn, stack.name, progress, timeout)
    described = cfn.describe_stacks(StackName=stack.name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return outputs, changed


def _wait_deleted(cfn: Any, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _stack_status(cfn, name) in {None, "DELETE_COMPLETE"}:
            return
        time.sleep(0.3)
    raise DeployError(f"stack {name} could not be deleted within {timeout:.0f} s")


def deploy_assembly(
    clients: Callable[[str], Any],
    assembly: Path,
    *,
    previous: dict[str, str] | None = None,
    progress: Progress = print,
) -> tuple[dict[str, str], dict[str, str]]:
    """Deploy every stack of ``assembly``; returns (all outputs merged, template digests by stack)."""
    previous = previous or {}
    s3, ssm, cfn = clients("s3"), clients("ssm"), clients("cloudformation")
    bucket = ensure_bootstrap(s3, ssm)
    outputs: dict[str, str] = {}
    digests: dict[str, str] = {}
    for stack in read_assembly(assembly):
        try:
            if stack.asset_manifest is not None:
                publish_assets(s3, stack.asset_manifest, progress)
            stack_outputs, _ = deploy_stack(
                cfn,
                stack,
                template_url=_template_url(s3, stack, bucket),
                previous_digest=previous.get(stack.name),
                progress=progress,
            )
        except ClientError as error:
            raise DeployError(f"{stack.name}: {error}") from error
        outputs.update(stack_outputs)
        digests[stack.name] = template_digest(stack)
    return outputs, digests
