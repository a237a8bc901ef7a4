"""The Fargate Spot and S3 rates the worker bills with.

Model prices live in the model catalogue the API checks templates against
(``functions.common.catalogue``). Fargate Spot prices change over time; the table holds the
us-east-1 rates the worker bills with and the worker's settings can override them. Money is
``Decimal`` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

SECONDS_PER_HOUR = Decimal(3600)


# Fargate Spot, Linux/x86, us-east-1, per hour.
FARGATE_SPOT_VCPU_HOUR = Decimal("0.01334053")
FARGATE_SPOT_GB_HOUR = Decimal("0.00146489")


@dataclass(frozen=True)
class FargatePrice:
    vcpu: Decimal
    memory_gb: Decimal
    vcpu_hour: Decimal = FARGATE_SPOT_VCPU_HOUR
    gb_hour: Decimal = FARGATE_SPOT_GB_HOUR

    @classmethod
    def for_task(cls, cpu_units: int, memory_mib: int) -> FargatePrice:
        """The price of a task definition's size (``cpu`` in CPU units, 1024 = 1 vCPU)."""
        return cls(vcpu=Decimal(cpu_units) / 1024, memory_gb=Decimal(memory_mib) / 1024)

    def at_size(self, cpu_units: int, memory_mib: int) -> FargatePrice:
        """The same rates for another task size."""
        return FargatePrice(
            vcpu=Decimal(cpu_units) / 1024,
            memory_gb=Decimal(memory_mib) / 1024,
            vcpu_hour=self.vcpu_hour,
            gb_hour=self.gb_hour,
        )

    def cost(self, seconds: Decimal) -> Decimal:
        return seconds * (self.vcpu * self.vcpu_hour + self.memory_gb * self.gb_hour) / SECONDS_PER_HOUR


# S3 Standard requests, us-east-1.
S3_PUT_PER_THOUSAND = Decimal("0.005")
S3_GET_PER_THOUSAND = Decimal("0.0004")


def s3_cost(puts: int, gets: int) -> Decimal:
    return (Decimal(puts) * S3_PUT_PER_THOUSAND + Decimal(gets) * S3_GET_PER_THOUSAND) / 1000
