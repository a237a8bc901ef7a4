"""Least privilege, cfn-lint and cdk-nag over both synthesized templates."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import Synthesized

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _statements(each: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for lid, resource in each.resources.items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::Role":
            documents.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        for document in documents:
            found.extend((lid, statement) for statement in document["Statement"])
    return found


def test_no_iam_statement_has_a_wildcard_action(each: Synthesized) -> None:
    statements = _statements(each)
    assert statements
    for lid, statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [a for a in actions if "*" in a], (lid, actions)
        assert "NotAction" not in statement, lid


def test_no_aws_managed_policies(each: Synthesized) -> None:
    for lid, role in each.of_type("AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), lid


def test_resource_star_only_for_actions_without_resource_level_permissions(each: Synthesized) -> None:
    # AWS documents these actions as supporting no resource-level permissions.
    resourceless = {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "dynamodb:ListStreams",
        "ecr:GetAuthorizationToken",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
    for lid, statement in _statements(each):
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if "*" in resources:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert set(actions) <= resourceless, (lid, actions)


def test_cfn_lint_reports_no_errors(each: Synthesized) -> None:
    from cfnlint.api import ManualArgs, lint

    template_path = next(each.assembly_dir.glob("*.template.json"))
    matches = lint(template_path.read_text(), config=ManualArgs(regions=["us-east-1"]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(str(m) for m in errors)


def test_cdk_nag_reports_nothing_unsuppressed(each: Synthesized) -> None:
    problems = [
        f"{m['path']}: {str(m.get('data'))[:200]}"
        for m in each.messages()
        if m["type"] in ("aws:cdk:error", "aws:cdk:warning")
    ]
    assert not problems, "\n".join(problems)


def test_every_accepted_finding_has_a_written_reason(each: Synthesized) -> None:
    suppressions = [
        (lid, rule)
        for lid, resource in each.resources.items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions
    for lid, rule in suppressions:
        assert rule["id"].startswith("AwsSolutions-"), (lid, rule)
        assert len(rule["reason"].split()) >= 8, (lid, rule)  # a sentence, not "ok"


def test_nag_ran_on_the_stack(each: Synthesized) -> None:
    report = next(each.assembly_dir.glob("AwsSolutions-*-NagReport.csv"))
    assert "Suppressed" in report.read_text()
