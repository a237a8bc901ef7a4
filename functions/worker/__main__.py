"""``python -m functions.worker``: one generation worker process."""

from functions.worker.main import main

main()
