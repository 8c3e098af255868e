"""Run a worker whose aiokafka fetcher dies as under uvloop (aiokafka#1038) once a trigger file exists.

`python -m tests.fetcher_fault services.alerts.worker` runs that module's `main()` with
aiokafka's `Fetcher._proc_fetch_request` raising the RuntimeError uvloop raises for a write
to a closed transport (which aiokafka does not catch) while ACCORDWATCH_TEST_FETCHER_FAULT
names an existing file. Everything else is the real worker on the real broker.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

UVLOOP_ERROR = "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is closed"


def inject(trigger: Path) -> None:
    """Make every fetch request raise uvloop's closed-transport RuntimeError while `trigger` exists."""
    real = Fetcher._proc_fetch_request

    async def failing(self: Fetcher, assignment: Any, node_id: int, request: Any) -> bool:
        if trigger.exists():
            raise RuntimeError(UVLOOP_ERROR)
        result: bool = await real(self, assignment, node_id, request)
        return result

    Fetcher._proc_fetch_request = failing


if __name__ == "__main__":
    inject(Path(os.environ["ACCORDWATCH_TEST_FETCHER_FAULT"]))
    importlib.import_module(sys.argv[1]).main()
