"""``make synth``: synthesize both stages in-process, offline, into ``cdk.out/<stage>/``.

- ``cdk.out/prod/``  the AWS deployment (stack ``PlotPalette``);
- ``cdk.out/local/`` the emulator deployment (stack ``PlotPalette-local``) that ``make local``
  deploys onto MiniStack.

Each directory is a complete cloud assembly (``cdk deploy --app cdk.out/prod`` deploys it).
Bundling of the Lambda dependencies layer is skipped unless ``--bundle`` is given (it needs PyPI);
``cdk deploy`` through cdk.json always bundles. The run fails when cdk-nag reports an error or a
warning that carries no suppression, printing each finding.

Usage: ``python -m stacks.synth [--bundle] [--out cdk.out] [-c key=value ...]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from stacks.app import build_app
from stacks.bundling import ROOT
from stacks.names import Stage


def synth_stage(
    stage: Stage, out: Path, *, bundle: bool = False, context: dict[str, str] | None = None
) -> Path:
    """Synthesize one stage into ``out/<stage>`` (emptied first); returns the assembly directory."""
    outdir = out / stage.value
    if outdir.exists():
        shutil.rmtree(outdir)
    app, _ = build_app(stage.value, outdir=outdir, context=context, bundle=bundle and stage is Stage.PROD)
    app.synth()
    return outdir


def findings(assembly_dir: Path) -> list[str]:
    """Errors and warnings (cdk-nag findings among them) recorded in an assembly's metadata."""
    import json

    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    found: list[str] = []
    for artifact in manifest.get("artifacts", {}).values():
        for path, entries in artifact.get("metadata", {}).items():
            for entry in entries:
                if entry.get("type") in ("aws:cdk:error", "aws:cdk:warning"):
                    found.append(f"{entry['type']} {path}: {str(entry.get('data'))[:300]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", action="store_true", help="build the prod dependencies layer (needs PyPI)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "cdk.out")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    context = dict(item.split("=", 1) for item in args.context)
    failed = False
    for stage in Stage:
        outdir = synth_stage(stage, args.out, bundle=args.bundle, context=context)
        problems = findings(outdir)
        for problem in problems:
            print(problem, file=sys.stderr)
        failed = failed or bool(problems)
        shown = outdir.relative_to(Path.cwd()) if outdir.is_relative_to(Path.cwd()) else outdir
        print(f"{stage.value}: {shown} ({'FAILED' if problems else 'ok'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
