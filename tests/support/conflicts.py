"""A DynamoDB client whose first transactions are cancelled by a concurrent writer.

DynamoDB cancels one of two concurrent transactions on the same item with ``TransactionConflict``;
moto never does. ``ConflictsFirst`` wraps the real client and cancels the first ``conflicts``
``TransactWriteItems`` calls that way, naming item ``at`` as the one in conflict (one reason per item,
as DynamoDB reports them); every other call goes to the real client.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class ConflictsFirst:
    def __init__(self, real: Any, conflicts: int, *, at: int = 0) -> None:
        self._real = real
        self.conflicts = conflicts
        self.at = at
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.conflicts:
            items = len(kwargs["TransactItems"])
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                    "CancellationReasons": [
                        {"Code": "TransactionConflict" if i == self.at else "None"} for i in range(items)
                    ],
                },
                "TransactWriteItems",
            )
        return self._real.transact_write_items(**kwargs)
