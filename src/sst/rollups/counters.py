"""Add to (or take from) one counter row of a rollup table, keyed by some columns."""

from __future__ import annotations

from sqlalchemy import insert, update


def bump(conn, table, keys: dict, counts: dict) -> None:
    """counts[k] += n on the row with these keys (NULL keys match NULL), inserting it when
    missing. Two passes never run at once (rollups.state.lock), so UPDATE-then-INSERT
    cannot race."""
    c = table.c
    where = [c[k].is_(None) if v is None else c[k] == v for k, v in keys.items()]
    res = conn.execute(update(table).where(*where)
                       .values({k: c[k] + n for k, n in counts.items()}))
    if not res.rowcount:
        conn.execute(insert(table), {**keys, **counts})
