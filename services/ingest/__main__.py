"""Run the ingest service: `python -m services.ingest`."""

from __future__ import annotations

import uvicorn

from services.ingest.settings import IngestSettings
from services.platform.http import uvicorn_options


def main() -> None:
    """Serve ingest on the configured host and port."""
    settings = IngestSettings()
    uvicorn.run(
        "services.ingest.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(settings.log_level, kafka_clients=True),
    )


if __name__ == "__main__":
    main()
