"""The CDK v2 app: the whole system as deployable stacks (see docs/deploy.md).

jsii runs the CDK in a Node.js child process that prints a large banner on stderr for Node 20; the
banner is noise for synth, so it is silenced before ``aws_cdk`` is imported anywhere in this package.
"""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
