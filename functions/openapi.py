"""Generate the OpenAPI document of the whole API from the domain routers.

``python -m functions.openapi`` (``make openapi``) writes it to ``functions/health/openapi.json``, the
package data the health function serves (docs/openapi.json is a link to it); a test fails when the
committed document differs from what the code generates.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server

from functions.common.api import API_DOMAINS, OPENAPI_TITLE, OPENAPI_VERSION, PUBLIC_PATHS, build_resolver
from functions.openapi_contract import complete_contract

DOCUMENT = Path(__file__).resolve().parent / "health" / "openapi.json"


def openapi_document() -> dict:
    app = build_resolver(*(importlib.import_module(f"functions.{d}.handler").router for d in API_DOMAINS))
    document = json.loads(
        app.get_openapi_json_schema(
            title=OPENAPI_TITLE,
            version=OPENAPI_VERSION,
            description="REST API of plot-palette: generation jobs, prompt templates, seed data, dashboard.",
            servers=[Server(url="/")],
            # Every route but the public ones needs a Cognito ID token: `Authorization: Bearer <token>`.
            security_schemes={"cognito": HTTPBearer(bearerFormat="JWT", description="Cognito ID token")},
            security=[{"cognito": []}],
        )
    )
    # Public routes opt out of the global requirement (Powertools drops an empty per-route list).
    for path in PUBLIC_PATHS & document["paths"].keys():
        for operation in document["paths"][path].values():
            operation["security"] = []
    return complete_contract(document)


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
