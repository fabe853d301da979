"""DuckDB over the Parquet lake: read-only SQL views, opened per query.

The lake is the system of record; DuckDB never owns a database file here, so any number of
processes can query while runs write (no DuckDB write lock to contend for). Views:

``raw_bars`` (newest batch of every source/symbol/date), ``curated_bars``, ``aligned_bars``,
the catalog's names for versioned tables: ``bar_features`` / ``l2_features`` / ``labels`` (the
newest stored version, as ``list_datasets`` and the I/O manager pick it) and ``<name>_<version>``
(e.g. ``bar_features_v1``), ``dq_metrics`` and ``l2_snapshots`` (with ``symbol`` taken from the
folder name). The older names ``features_<group>_<version>`` stay as aliases.
Views exist only for tables that hold at least one file.

Time: every connection is pinned to UTC (``SET TimeZone = 'UTC'``), so the stored UTC timestamps
come back as UTC-aware values whatever the machine's zone. Range filters in SQL should follow the
platform's convention, ``ts >= start AND ts < end``.
A connection holds the shared layout lock of every table its views read (``resources.lake``), so
compaction never removes or merges a file under a running query (README "Reliability").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from resources.lake import layout_lock


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class LakeWarehouse(dg.ConfigurableResource):
    """Opens an in-memory DuckDB connection with views over the lake's Parquet files."""

    base_path: str
    level2_path: str
    threads: int = 2

    def _table_dirs(self) -> list[Path]:
        """The lake table folders the views read (each holds its layout ``.lock``)."""
        root = Path(self.base_path) / "lake"
        dirs = [root / "curated_bars", root / "aligned_bars"]
        dirs += sorted((root / "raw_bars").glob("source=*")) + sorted((root / "dq_metrics").glob("*=*"))
        dirs += sorted((root / "features").glob("*/version=*")) + sorted((root / "labels").glob("version=*"))
        return [d for d in dirs if d.is_dir()]

    def _view_sources(self) -> dict[str, str]:
        root = Path(self.base_path) / "lake"
        views: dict[str, str] = {}

        def add(name: str, folder: Path, pattern: str) -> None:
            if folder.exists() and next(folder.glob(pattern), None) is not None:
                views[name] = f"read_parquet({_quote(folder / pattern)}, union_by_name=true, filename=true)"

        add("raw_bars_all", root / "raw_bars", "*/*/*/batch-*.parquet")
        add("curated_bars", root / "curated_bars", "*/*/part.parquet")
        add("aligned_bars", root / "aligned_bars", "*/*/part.parquet")
        add("dq_metrics", root / "dq_metrics", "*/*/*/part.parquet")
        newest: dict[str, tuple[int, Path]] = {}
        for version_dir in sorted((root / "features").glob("*/version=*")) + sorted((root / "labels").glob("version=*")):
            version = version_dir.name.split("=", 1)[1]
            name = "labels" if version_dir.parent == root / "labels" else version_dir.parent.name
            before = len(views)
            add(f"{name}_{version}", version_dir, "*/*/part.parquet")
            if len(views) > before:
                if name != "labels":
                    views[f"features_{name}_{version}"] = views[f"{name}_{version}"]  # the older name
                if version[1:].isdigit() and int(version[1:]) > newest.get(name, (-1, version_dir))[0]:
                    newest[name] = (int(version[1:]), version_dir)
        for name, (_, version_dir) in newest.items():
            views[name] = views[f"{name}_{version_dir.name.split('=', 1)[1]}"]
        add("l2_files", Path(self.level2_path), "*/*_snapshots_*.parquet")
        return views

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh in-memory connection with the views defined (closed on exit)."""
        resource = DuckDBResource(database=":memory:", connection_config={"threads": self.threads})
        with ExitStack() as locks, resource.get_connection() as conn:
            for folder in self._table_dirs():
                locks.enter_context(layout_lock(folder, shared=True))
            conn.execute("SET TimeZone = 'UTC'")
            for name, source in self._view_sources().items():
                if name == "raw_bars_all":
                    conn.execute(f"CREATE VIEW raw_bars_all AS SELECT * FROM {source}")
                    conn.execute(
                        "CREATE VIEW raw_bars AS SELECT * EXCLUDE (filename) FROM raw_bars_all "
                        "QUALIFY filename = max(filename) OVER (PARTITION BY source, symbol, date)"
                    )
                elif name == "l2_files":
                    conn.execute(
                        f"CREATE VIEW l2_snapshots AS SELECT regexp_extract(filename, '([^/]+)/[^/]+$', 1) AS symbol, "
                        f"CAST(regexp_extract(filename, '([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})_snapshots_[^/]+$', 1) AS DATE) AS date, * "
                        f"FROM {source}"
                    )
                else:
                    conn.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (filename) FROM {source}")
            yield conn

    def views(self) -> list[str]:
        with self.connect() as conn:
            return [row[0] for row in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
