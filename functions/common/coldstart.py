"""Cold start: no garbage-collector passes while an API handler module imports.

Importing a handler builds about 90,000 tracked objects (boto3, Powertools, pydantic models), none
of them garbage: they live as long as the process. The collector still walks them on every pass it
runs during the import, which cost 0.1-0.3x of ``import boto3; boto3.client("dynamodb")``
(``benchmarks/cold_start.py``). So each API handler imports this module first, which pauses the
collector, and calls ``imported()`` last, which moves everything the import built to the permanent
generation (``gc.freeze``: no later pass walks it again, warm invocations included) and resumes the
collector.

The price: the cycles that became garbage during the import are frozen with the rest instead of
freed, once per process (about 700 objects for the jobs handler, well under a megabyte). Only the
first import of this module pauses the collector; ``imported()`` always resumes it, so a process
that imports several handlers (the tests) runs with the collector on.
"""

import gc

gc.disable()


def imported() -> None:
    """The handler module is built: freeze what its import made and resume the collector."""
    gc.freeze()
    gc.enable()
