"""The embedded runtime: MiniStack + the deployed ``local`` stage + generation workers, in one state dir.

One module per responsibility (``plot-palette local`` in ``local/commands/local.py`` strings them
together):

    state.py       runtime.json: what a running runtime records for the other subcommands; liveness
    settings.py    the emulator settings the runtime starts MiniStack with (Lambda concurrency, snapshots)
    synth.py       synthesizing the CDK app's ``local`` stage
    resources.py   the deployed resources, from stack outputs named after environment variables
    tokens.py      real ID tokens from the local Cognito pool
    capture.py     the event capture behind ``plot-palette events``
    workers.py     the generation worker processes
    stops.py       Ctrl-C / SIGTERM / SIGHUP handling

The emulator process itself is ``local/emulator.py`` and the CloudFormation deployer
``local/deploy.py`` (test fixtures use both too).

Layout of a state dir (default ``.plot-palette/``)::

    runtime.json        port, endpoint, API URL, stack outputs, pids, ready/stopped times
    emulator/           MiniStack's persisted state (DynamoDB, SQS, Cognito, CloudFormation, …),
                        snapshotted every few seconds (local/shims/snapshots.py)
    emulator/s3/        S3 object bodies (written through on every put)
    cdk.out/            the synthesized ``local`` stage
    deploy.json         template digests of the last deploy (an unchanged stack is not re-sent)
    events.jsonl        every event that crossed the bus, oldest first (``plot-palette events``)
    logs/               emulator.log, synth.log, worker-N.log
"""
