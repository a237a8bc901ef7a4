"""The worker's Fargate Spot and S3 rates, in Decimal (model prices: tests/unit/common/test_catalogue.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from functions.worker.pricing import FargatePrice, s3_cost

pytestmark = pytest.mark.unit


def test_fargate_cost_follows_the_task_size():
    one_vcpu_two_gb = FargatePrice.for_task(1024, 2048)
    quarter = FargatePrice.for_task(256, 512)
    hour = Decimal(3600)
    assert one_vcpu_two_gb.cost(hour) == one_vcpu_two_gb.vcpu_hour + 2 * one_vcpu_two_gb.gb_hour
    assert quarter.cost(hour) * 4 == one_vcpu_two_gb.cost(hour)
    assert one_vcpu_two_gb.cost(Decimal(0)) == 0


def test_s3_requests_are_priced_per_thousand():
    assert s3_cost(puts=1000, gets=0) == Decimal("0.005")
    assert s3_cost(puts=0, gets=1000) == Decimal("0.0004")
