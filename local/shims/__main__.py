"""``python -m local.shims``: MiniStack's own entry point, with the shims installed first."""

from __future__ import annotations

import sys

from local.shims import install_all

installed = install_all()
print(f"plot-palette shims installed: {', '.join(installed) or 'none'}", file=sys.stderr, flush=True)

from ministack.app import main  # noqa: E402 - after the shims patched the service modules

sys.exit(main())
