"""Failures injected at the real database: a trigger that refuses one subject's rows (reusable)."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

_NAME = re.compile(r"^[a-z0-9_]+$")


def refuse_subject(engine: Engine, table: str, subject: str) -> None:
    """Make every INSERT of a row of `subject` into `table` fail, as a value the database refuses would.

    PostgreSQL raises SQLSTATE 22023 (a DataError); SQLite RAISE(ABORT) (an IntegrityError):
    both permanent, so the worker must park the event and go on.
    """
    if not _NAME.match(table):
        raise ValueError(f"not a table name: {table!r}")
    literal = subject.replace("'", "''")
    name = f"refuse_{table}_{abs(hash(subject)) % 10**8}"
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.subject = '{literal}' THEN "
                f"RAISE EXCEPTION 'injected: rows of % are refused', NEW.subject USING ERRCODE = '22023'; "
                f"END IF; RETURN NEW; END $$"))
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"))
        else:
            conn.execute(text(
                f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN NEW.subject = '{literal}' "
                f"BEGIN SELECT RAISE(ABORT, 'injected: rows of {literal} are refused'); END"))
