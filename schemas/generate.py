"""Generate the JSON Schema files in `schemas/json/` from the event models.

Run `python -m schemas.generate` after changing a model; a test fails while the files
in the repository are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.registry import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type, as posted to ingest."""
    cls = EVENT_TYPES[event_type]
    body = cls.model_json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "$id": f"urn:accordwatch:schema:{event_type}:v{cls.SCHEMA_VERSION}",
        **body,
    }


def render(schema: dict[str, Any]) -> str:
    """Stable text form of a schema (what the files hold)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    """Every schema file and the text it should hold."""
    return {SCHEMA_DIR / f"{name}.schema.json": render(json_schema(name)) for name in EVENT_TYPES}


def main() -> int:
    """Write the schema files; remove files of types that no longer exist."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    wanted = expected_files()
    for stale in set(SCHEMA_DIR.glob("*.schema.json")) - set(wanted):
        stale.unlink()
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
