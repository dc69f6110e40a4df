"""Point-in-time-correct feature joins on DuckDB, shared by training and materialisation.

For every (entity, as_of) row, a window feature counts facts whose time is in
[as_of - window, as_of): strictly before. It is computed as the difference of
two ASOF lookups in a per-entity cumulative table (cum(< as_of) minus
cum(< as_of - window)), so the engine streams through logs of any size with
sort-merge joins instead of comparing every row with every fact. Facts that
share a timestamp are summed into one cumulative step first, so ties are never
split. Sums run in DECIMAL(18,3): exact and order-independent, hence the same
bits offline and online.

Each group of features also returns the latest *availability* time of the
facts it used (`__src_<n>`); `guard.py` rejects any row where that is not
before the prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from vidrec.features.spec import BatchFeature, FeatureSet

GroupKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class Group:
    index: int
    key: GroupKey
    features: tuple[BatchFeature, ...]

    @property
    def table(self) -> str:
        return f"__g{self.index}"

    @property
    def src(self) -> str:
        return f"__src_{self.index}"

    @property
    def entity_keys(self) -> tuple[str, ...]:
        return self.features[0].entity.keys

    @property
    def kind(self) -> str:
        return self.key[3].split(":")[0]

    @property
    def realtime(self) -> bool:
        return self.features[0].freshness == "realtime"


def groups_of(fs: FeatureSet) -> list[Group]:
    """Attribute groups first: they provide the derived keys (creator_id, category)."""
    raw = list(fs.groups().items())
    raw.sort(key=lambda kv: (kv[0][3].split(":")[0] != "attr",))
    return [Group(i, k, tuple(v)) for i, (k, v) in enumerate(raw)]


class PointInTime:
    """Compiles a FeatureSet to DuckDB SQL over a connection holding the source views."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fs: FeatureSet, last_n: int) -> None:
        self.con, self.fs, self.last_n = con, fs, last_n
        self.groups = groups_of(fs)
        self._prepared = False
        self._calls = 0
        self._tables: list[str] = []

    def prepare(self) -> None:
        """Build one cumulative (or attribute / history) table per group."""
        for g in self.groups:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {g.table} AS {self._group_sql(g)}")
        self._prepared = True

    def _group_sql(self, g: Group) -> str:
        f0 = g.features[0]
        keys = ", ".join(g.entity_keys)
        t, avail = f0.join_time, f0.source.available_at
        src = f"({f0.source.sql}) s"
        not_null = " AND ".join(f"{k} IS NOT NULL" for k in (*g.entity_keys, t, avail))
        if g.kind == "attr":
            cols = ", ".join(f"{f.column} AS {f.name}" for f in g.features)
            return (
                f"SELECT {keys}, {t} AS __t, {avail} AS __avail, {cols} FROM {src} WHERE {not_null}"
            )
        w = f"PARTITION BY {keys} ORDER BY __t"
        if g.kind == "hist":
            (f,) = g.features
            return (
                f"SELECT {keys}, __t, max(__a) OVER (PARTITION BY {keys} ORDER BY __t ROWS "
                f"UNBOUNDED PRECEDING) AS __avail, flatten(list(__ids) OVER ({w} ROWS "
                f"BETWEEN {self.last_n - 1} PRECEDING AND CURRENT ROW))[-{self.last_n}:] "
                f"AS {f.name} FROM (SELECT {keys}, {t} AS __t, max({avail}) AS __a, "
                f"list({f.column} ORDER BY {f.column}) AS __ids FROM {src} "
                f"WHERE {not_null} GROUP BY ALL)"
            )
        measures = sorted({f.column for f in g.features if f.agg == "sum"}, key=str)
        sums = "".join(f", sum(sum(CAST({c} AS DECIMAL(18,3)))) OVER w AS c__{c}" for c in measures)
        return (
            f"SELECT {keys}, {t} AS __t, max(max({avail})) OVER w AS __avail, "
            f"sum(count(*)) OVER w AS c__count{sums} FROM {src} WHERE {not_null} "
            f"GROUP BY {keys}, {t} WINDOW w AS ({w} ROWS UNBOUNDED PRECEDING)"
        )

    def select(self, rows: str, groups: list[Group] | None = None, derive_keys: bool = True) -> str:
        """SQL adding every group's columns to relation `rows` (needs ts, as_of, keys).

        Each group is evaluated once per distinct (key, as_of) - far fewer than
        rows, since many rows share a user or video within a snapshot - into a
        narrow temp table, then attached to the rows with hash joins.
        """
        if not self._prepared:
            self.prepare()
        self._calls += 1
        tag = f"__j{self._calls}"
        groups = groups or self.groups
        base = rows
        attached: list[tuple[Group, str]] = []
        for g in groups:
            if g.kind != "attr":
                continue
            table = self._evaluate(g, base, f"{tag}_{g.index}")
            attached.append((g, table))
            derived = self._derived_after(g) if derive_keys else {}
            if derived:
                # derived keys are read straight from the attribute table just built
                keys, at = ", ".join(g.entity_keys), self._at(g)
                base = (
                    f"(SELECT r.*, {', '.join(derived.values())} FROM {base} r "
                    f"LEFT JOIN {table} k USING ({keys}, {at}))"
                )
        for g in groups:
            if g.kind != "attr":
                attached.append((g, self._evaluate(g, base, f"{tag}_{g.index}")))
        cols, joins = [], []
        for i, (g, table) in enumerate(attached):
            on = " AND ".join(f"r.{k} = f{i}.{k}" for k in (*g.entity_keys, self._at(g)))
            joins.append(f"LEFT JOIN {table} f{i} ON {on}")
            cols += [f"f{i}.{c}" for c in (g.src, *(f.name for f in g.features))]
        return f"SELECT r.*, {', '.join(cols)} FROM {base} r {' '.join(joins)}"

    def _at(self, g: Group) -> str:
        return "ts" if g.realtime else "as_of"

    def _evaluate(self, g: Group, rows: str, table: str) -> str:
        self._create(table, self._join_sql(g, rows))
        return table

    def _create(self, table: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}")
        self._tables.append(table)

    def release(self) -> None:
        """Drop the temp tables of earlier `select` calls, once their results are read."""
        for t in self._tables:
            self.con.execute(f"DROP TABLE IF EXISTS {t}")
        self._tables.clear()

    def _derived_after(self, g: Group) -> dict[str, str]:
        """Key columns this attribute group provides: name -> SQL expression."""
        cols = {}
        names = {f.name: f for f in g.features}
        for key, (_entity, attr) in self.fs.derived_keys.items():
            if attr in names:
                cast = "BIGINT" if names[attr].dtype != "str" else "VARCHAR"
                cols[key] = f"CAST(k.{attr} AS {cast}) AS {key}"
        return cols

    def _join_sql(self, g: Group, rows: str) -> str:
        keys, at = ", ".join(g.entity_keys), self._at(g)
        on = " AND ".join(f"r.{k} = {{a}}.{k}" for k in g.entity_keys)

        def asof(alias: str, shift: int = 0) -> str:
            edge = f"r.{at} - {shift}" if shift else f"r.{at}"
            return (
                f"ASOF LEFT JOIN {g.table} {alias} ON {on.format(a=alias)} AND {edge} > {alias}.__t"
            )

        joins, cols = [asof("a")], [f"a.__avail AS {g.src}"]
        windows = sorted({f.window_s for f in g.features if f.window_s is not None})
        for j, w in enumerate(windows):
            joins.append(asof(f"b{j}", w))
        for f in g.features:
            if g.kind in ("attr", "hist"):
                cols.append(f"a.{f.name} AS {f.name}")
                continue
            c = "c__count" if f.agg == "count" else f"c__{f.column}"
            expr = f"a.{c}"
            if f.window_s is not None:
                expr = f"a.{c} - coalesce(b{windows.index(f.window_s)}.{c}, 0)"
            cols.append(f"CAST({expr} AS {'BIGINT' if f.agg == 'count' else 'DOUBLE'}) AS {f.name}")
        return (
            f"SELECT r.*, {', '.join(cols)} FROM (SELECT DISTINCT {keys}, {at} FROM {rows}) "
            f"r {' '.join(joins)}"
        )

    def entity_groups(self, entity: str, realtime: bool = False) -> list[Group]:
        return [g for g in self.groups if g.key[0] == entity and g.realtime == realtime]


def as_of_expr(refresh_s: int, ts: str = "ts") -> str:
    """SQL for the snapshot a request at `ts` sees: floor(ts, refresh), or ts itself."""
    return f"({ts} // {refresh_s}) * {refresh_s}" if refresh_s > 0 else ts


def as_of_value(refresh_s: int, ts: int) -> int:
    return (ts // refresh_s) * refresh_s if refresh_s > 0 else ts


def snapshot_after(refresh_s: int, ts: int) -> int:
    """The first snapshot at or after `ts`: it holds everything before `ts`, where
    `as_of_value(ts)` would miss what came after floor(ts, refresh)."""
    return -(-ts // refresh_s) * refresh_s if refresh_s > 0 else ts
