"""Write the JSON Schema of every event detail into docs/events/ (``make schemas``)."""

from __future__ import annotations

import sys

from functions.common.events import write_schemas

if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else "docs/events"
    for name in write_schemas(directory):
        print(f"wrote {directory}/{name}")
