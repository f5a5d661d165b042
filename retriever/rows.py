"""The catalog's rows as the live catalog and the indexing job both keep them: one schema, one key, and what a
published index version holds of the live part (so a rebuild from the catalog files keeps it).

Rows are keyed by (channel_id, id): content added through the service carries its channel; rows of the
catalog files have none. `SEQ_COLUMN` says which journal line last wrote a row (null: the files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from edurank.artifacts import Manifest, resolve
from edurank.errors import InputError
from edurank.retriever.catalog import Catalog
from edurank.retriever.content_index import IDS_FILE

HASH_COLUMN = "text_sha1"  # ids.parquet: what each row's vector was embedded from, for incremental runs
SEQ_COLUMN = "live_seq"
ROW_SCHEMA = {"id": pl.String, "channel_id": pl.String, "channel_version": pl.Int64, "content_id": pl.String,
              "title": pl.String, "description": pl.String, "text": pl.String, "language": pl.String,
              "kind": pl.String, HASH_COLUMN: pl.String, SEQ_COLUMN: pl.Int64}
KEY_SEPARATOR = "\x1f"  # ids and channels with control characters are refused at the routes


def as_rows(content: pl.DataFrame) -> pl.DataFrame:
    """Content in ROW_SCHEMA: the columns it lacks as nulls, the others cast, any more left out."""
    return content.select([pl.col(name).cast(kind, strict=False) if name in content.columns
                           else pl.lit(None, kind).alias(name) for name, kind in ROW_SCHEMA.items()])


def key_of(channel_id: str | None, item_id: str) -> str:
    return f"{channel_id or ''}{KEY_SEPARATOR}{item_id}"


def keys_of(rows: pl.DataFrame) -> list[str]:
    channels = rows["channel_id"] if "channel_id" in rows.columns else [None] * len(rows)
    return [key_of(c, i) for c, i in zip(channels, rows["id"], strict=True)]


def manifest_seq(manifest: Manifest | None) -> int:
    """The last journal line an index version holds (0: none)."""
    return int((manifest.data.get("live_seq") if manifest else None) or 0)


@dataclass(frozen=True)
class LivePart:
    """What an index version holds of the live catalog: its rows, the journal line they reach, and the deleted
    keys' channel versions."""

    version: str
    rows: pl.DataFrame
    seq: int
    tombstones: dict[str, int | None]


def live_part(root: Path) -> LivePart | None:
    """The live part of the latest version under `root` (None: it has none, or no version is readable)."""
    try:
        directory = resolve(root)
        manifest = Manifest.read(directory)
        items = pl.read_parquet(directory / IDS_FILE)
    except (InputError, OSError, pl.exceptions.PolarsError):
        return None
    if SEQ_COLUMN not in items.columns:
        return None
    return LivePart(manifest.version, as_rows(items.filter(pl.col(SEQ_COLUMN).is_not_null())), manifest_seq(manifest),
                    dict(manifest.details.get("tombstones", {})))


def with_live_part(catalog: Catalog, part: LivePart) -> Catalog:
    """The catalog's content plus the live rows: a live row replaces the file row of its key, and a file row
    deleted through the service stays out."""
    replaced = set(keys_of(part.rows)) | set(part.tombstones)
    kept = catalog.content.filter(pl.Series([key not in replaced for key in keys_of(catalog.content)],
                                            dtype=pl.Boolean))
    content = pl.concat([kept, part.rows.drop(HASH_COLUMN)], how="diagonal_relaxed")
    return Catalog(catalog.topics, content, catalog.correlations, catalog.files)
