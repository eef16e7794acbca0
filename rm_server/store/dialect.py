"""The few places where SQLite and PostgreSQL SQL differ, one small class per backend.

Table modules write plain SQL that both accept (`INSERT … ON CONFLICT`, `RETURNING`, `CAST`,
`?` placeholders, integers for booleans, ISO text for times) and ask the dialect only for
what differs: building JSON in the database (the fleet list and schedule sets are built as
JSON text by the database, not as models: docs/benchmarks.md), reading a JSON parameter as
rows, a two-argument minimum, byte lengths and row locks. No module branches on the backend
anywhere else (STYLE.md: "one small per-backend module")."""

from __future__ import annotations


class SqliteDialect:
    name = "sqlite"
    # A row lock for read-then-write transactions: SQLite's BEGIN IMMEDIATE already holds
    # the one write lock of the database.
    for_update = ""
    # SQLite plans the schedule-set subqueries by their indexes whatever its statistics say
    analyze_after_bulk = ""
    # Hosts per transaction of a fleet policy (store/fleet.py): the write lock is the whole
    # database's, so short; at 19k, 2,500 made the push slower than 1,000 (1.46 vs 1.20 s).
    policy_slice = 1000

    @staticmethod
    def obj(**fields: str) -> str:
        """A JSON object from SQL expressions (each key a field name)."""
        return "json_object(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    @staticmethod
    def agg(expr: str, order: str | None = None) -> str:
        """A JSON array of the JSON values `expr` takes over the group ('[]' for none), in
        `order` (SQLite keeps the order of the subquery it reads, which must sort by it)."""
        return f"json(coalesce(json_group_array(json({expr})), '[]'))"

    @staticmethod
    def body(key: str, expr: str, order: str | None = None) -> str:
        """The reply body `{"key": [expr, ...]}` as bytes (a BLOB: Python gets the body with
        no str in between to encode). Spliced as text, not json_object(agg(...)): json()
        over the aggregate parsed and rewrote a 9.5 MB fleet list. At 19k hosts: 65-90 ms
        instead of 101-104, peak memory 10 MB lower, the same bytes (docs/benchmarks.md)."""
        return f"""CAST('{{"{key}":' || json_group_array(json({expr})) || '}}' AS BLOB)"""

    @staticmethod
    def agg_distinct(expr: str) -> str:
        """A JSON array of the distinct scalar values of `expr`."""
        return f"json_group_array(DISTINCT {expr})"

    @staticmethod
    def js(expr: str) -> str:
        """A text column holding JSON, embedded as JSON (not as a string)."""
        return f"json({expr})"

    @staticmethod
    def jbool(cond: str) -> str:
        """A condition as a JSON true/false."""
        return f"json(CASE WHEN {cond} THEN 'true' ELSE 'false' END)"

    @staticmethod
    def jget(col: str, key: str) -> str:
        """The value under `key` of a JSON text column, as a JSON value."""
        return f"json_extract({col}, '$.{key}')"

    @staticmethod
    def text(expr: str) -> str:
        """A JSON expression as text."""
        return expr

    @staticmethod
    def each_text(param: str = "?") -> str:
        """Rows (column `value`, text) of a JSON array of strings given as one parameter."""
        return f"json_each({param})"

    @staticmethod
    def each_json(param: str = "?") -> str:
        """Rows (column `value`, JSON) of a JSON array of arrays: `value ->> 0` is the first item."""
        return f"json_each({param})"

    @staticmethod
    def least(a: str, b: str) -> str:
        return f"min({a}, {b})"

    @staticmethod
    def octets(expr: str) -> str:
        """Bytes of a text value in UTF-8."""
        return f"length(CAST({expr} AS BLOB))"


class PostgresDialect:
    name = "postgresql"
    # Two replicas may apply events of one job (an agent that moved mid-stream): the row is
    # locked for the transaction that reads its counters and writes after them.
    for_update = " FOR UPDATE"
    # PostgreSQL plans by its statistics, which autovacuum refreshes up to a minute later: a
    # fleet's first policy (19k schedules where there were none) left them saying "empty",
    # and the push's schedule-set read scanned every source group once per host (70 s at
    # 19k; 0.85 s after ANALYZE, docs/benchmarks.md). ANALYZE runs in the writer's own
    # transaction, which counts its own new rows.
    analyze_after_bulk = "ANALYZE source_groups, schedules, schedule_groups"
    # Hosts per transaction of a fleet policy: each is a durable commit and ~10 round trips
    # on the writer lane, and under the load of a push the leader's slices were its pace
    # (130 ms per 1,000 with 3 replicas and 19k agents on 2 cores; 35 ms alone). Rows are
    # locked per host, so a longer transaction holds up only this replica's writer lane:
    # at 19k and 3 replicas, acked by all in 2.77/2.63 s against 3.46/3.05 s with 1,000
    # (docs/benchmarks.md).
    policy_slice = 2500

    @staticmethod
    def obj(**fields: str) -> str:
        return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    @staticmethod
    def agg(expr: str, order: str | None = None) -> str:
        return f"coalesce(json_agg({expr}{' ORDER BY ' + order if order else ''}), '[]'::json)"

    @classmethod
    def body(cls, key: str, expr: str, order: str | None = None) -> str:
        """The reply body `{"key": [expr, ...]}`, as text (the caller encodes it)."""
        return cls.text(cls.obj(**{key: cls.agg(expr, order)}))

    @staticmethod
    def agg_distinct(expr: str) -> str:
        return f"coalesce(json_agg(DISTINCT {expr}), '[]'::json)"

    @staticmethod
    def js(expr: str) -> str:
        return f"({expr})::json"

    @staticmethod
    def jbool(cond: str) -> str:
        return f"({cond})"

    @staticmethod
    def jget(col: str, key: str) -> str:
        return f"(({col})::json -> '{key}')"

    @staticmethod
    def text(expr: str) -> str:
        return f"({expr})::text"

    @staticmethod
    def each_text(param: str = "?") -> str:
        return f"json_array_elements_text(({param})::json) AS value"

    @staticmethod
    def each_json(param: str = "?") -> str:
        return f"json_array_elements(({param})::json) AS value"

    @staticmethod
    def least(a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    @staticmethod
    def octets(expr: str) -> str:
        return f"octet_length({expr})"


Dialect = SqliteDialect | PostgresDialect
