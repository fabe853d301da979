"""How a lake table's columns are encoded in Parquet.

Most tables are zstd-compressed (bars: prices and time stamps compress several-fold). Tables that
training reads in bulk, feature groups and labels, are mostly float columns whose mantissas do not
compress (zstd saved 10% on v1 bar features) while decoding them cost about half of a 4.9M-row
training pull: their float and time-stamp columns are stored plain (no codec, no dictionary), the
few low-cardinality columns (symbol, date, group, version, status) still dictionary-encoded.
Measured with ``python -m bench retrieval`` (README "Retrieval"). Small files (a raw batch, a TF_1
L2 day of 30-second snapshots, a DQ month, a day file) are LZ4 (``LZ4_RAW``) rather than zstd:
zstd's cost there is mostly a fixed cost per column chunk, and it made writing them about twice as
slow for files 0-35% smaller (``python -m bench.parquet_encoding``). Readers need no setting:
Parquet files describe their own encoding, and old zstd files stay readable.
"""

from __future__ import annotations

import pyarrow as pa

READ_OPTIMISED_PREFIXES = ("features/", "labels")
SMALL_FILE_ROWS = 4096
"""Files of fewer rows are LZ4-compressed, larger ones zstd (see the module docstring)."""


def is_read_optimised(table_name: str) -> bool:
    """Whether the lake table ``table_name`` (e.g. ``features/bar_features``) is stored for fast bulk reads."""
    return table_name.startswith(READ_OPTIMISED_PREFIXES)


def _numeric(field: pa.Field) -> bool:
    kind = field.type
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_timestamp(kind)


def write_options(table_name: str | None, schema: pa.Schema, rows: int | None = None) -> dict:
    """Keyword arguments for ``pyarrow.parquet.write_table`` for a file of ``table_name`` holding
    ``rows`` rows (None: not known, e.g. a file written in pieces)."""
    if table_name is None or not is_read_optimised(table_name):
        return compressed_options(schema, rows)
    return {"compression": "none", "use_dictionary": dictionary_columns(schema)}


def codec_for(rows: int | None) -> str:
    """LZ4 for a file of fewer than ``SMALL_FILE_ROWS`` rows, zstd for a larger one or an unknown size."""
    return "lz4" if rows is not None and rows < SMALL_FILE_ROWS else "zstd"


def compressed_options(schema: pa.Schema, rows: int | None = None) -> dict:
    """zstd (LZ4 below ``SMALL_FILE_ROWS`` rows), with dictionaries only for the low-cardinality
    columns (strings, dates, flags).

    On flat tables dictionary-encoding every column (pyarrow's default) made float and time-stamp
    pages bigger and writes slower: ``python -m bench.parquet_encoding`` measured writes 1.2-1.3x
    faster and files 11-14% smaller (raw batches, curated and aligned month files; DQ files 2%
    smaller); reads 1.05-1.36x faster in two runs but for one table (curated, 20 files) 0.8x once. Tables with list columns (the TF_1 L2 snapshot files) keep
    pyarrow's default: their book levels repeat, and without dictionaries the files grew 2-10%."""
    codec = codec_for(rows)
    if any(pa.types.is_nested(field.type) for field in schema):
        return {"compression": codec}
    return {"compression": codec, "use_dictionary": dictionary_columns(schema)}


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The non-numeric columns: symbol, date, source, status and flag columns."""
    return [f.name for f in schema if not _numeric(f)]
