"""Reading and validating catalogs in the Learning Equality (LECR) layout.

A catalog directory holds `topics`, `content` and (optionally) `correlations`, each as `.csv` or
`.parquet`. Every problem is reported with the file, the row (numbered as a spreadsheet shows it: the
CSV header is row 1) and the column, so a curator can fix the file without reading code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from edurank.artifacts import hash_files
from edurank.errors import CatalogError, InputError

TOPIC_COLUMNS = ("id", "title", "description", "channel", "category", "level", "language", "parent",
                 "has_content")
CONTENT_COLUMNS = ("id", "title", "description", "kind", "text", "language", "copyright_holder", "license")
REQUIRED = {
    "topics": ("id", "title", "language", "parent"),
    "content": ("id", "title", "language"),
    "correlations": ("topic_id", "content_ids"),
}
BREADCRUMB_SEPARATOR = " > "
TRUE_VALUES = {"true", "1", "yes"}
FALSE_VALUES = {"false", "0", "no", ""}


@dataclass(frozen=True)
class Table:
    """One catalog file as strings, with what is needed to point at its rows in messages."""

    path: Path
    frame: pl.DataFrame
    first_row: int  # the row number of the first data row as the user sees it

    def row(self, index: int) -> int:
        return index + self.first_row

    def error(self, message: str, index: int | None = None, column: str | None = None) -> CatalogError:
        return CatalogError(self.path.name, message, None if index is None else self.row(index), column)


@dataclass(frozen=True)
class Catalog:
    """Validated topics (with breadcrumbs), content items and gold (topic_id, content_id) pairs."""

    topics: pl.DataFrame
    content: pl.DataFrame
    correlations: pl.DataFrame
    files: tuple[Path, ...] = field(default=())  # topics, content, then correlations when read from a file

    @cached_property
    def data_hash(self) -> str:
        """sha256 of the files the catalog was read from: ties artifacts to the exact data."""
        return hash_files(self.files)

    @cached_property
    def texts_hash(self) -> str:
        """sha256 of the topics and content files alone: what mining candidates reads (the links are not),
        so mined candidates stay valid when only the links change."""
        return hash_files(self.files[:2])

    @cached_property
    def gold(self) -> dict[str, set[str]]:
        """topic id -> set of correct content ids."""
        grouped = self.correlations.group_by("topic_id").agg(pl.col("content_id"))
        return {row[0]: set(row[1]) for row in grouped.iter_rows()}

    def topics_with_content(self) -> pl.DataFrame:
        return self.topics.filter(pl.col("id").is_in(list(self.gold)))

    def topics_in_order(self, ids: Sequence[str]) -> pl.DataFrame:
        """The rows of these topic ids, in the order given (ids not in the catalog are left out)."""
        order = pl.DataFrame({"id": list(ids)}, schema={"id": pl.String}).with_row_index("_order")
        return self.topics.join(order, on="id").sort("_order").drop("_order")


def find_file(directory: Path, name: str) -> Path | None:
    for suffix in (".csv", ".parquet"):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_table(path: Path, kind: str) -> Table:
    """Read a CSV (UTF-8, multi-line quoted fields) or Parquet file with every column as a string."""
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # polars raises several types for a broken file
            raise CatalogError(path.name, f"cannot be read as Parquet ({err})") from err
        frame = frame.with_columns(pl.all().cast(pl.String))
        table = Table(path, frame, first_row=1)
    else:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise CatalogError(path.name, f"line {line}: byte 0x{raw[err.start]:02x} is not valid UTF-8; "
                               "save the file as UTF-8") from err
        try:
            frame = pl.read_csv(io.BytesIO(raw), infer_schema=False, encoding="utf8")
        except Exception as err:
            raise CatalogError(path.name, f"cannot be parsed as CSV ({err})") from err
        table = Table(path, frame, first_row=2)
    missing = [c for c in REQUIRED[kind] if c not in table.frame.columns]
    if missing:
        raise CatalogError(path.name, f"missing column(s) {', '.join(missing)}; "
                           f"found {', '.join(table.frame.columns) or 'none'}")
    # Strip surrounding blanks and treat blank strings as missing, so '' and NULL mean the same thing.
    stripped = table.frame.with_columns(pl.col(pl.String).str.strip_chars().replace("", None))
    return Table(path, stripped, table.first_row)


def check_ids(table: Table, column: str = "id") -> None:
    ids = table.frame[column]
    nulls = ids.is_null()
    if nulls.any():
        raise table.error("empty id", int(nulls.arg_true()[0]), column)
    duplicated = ids.is_duplicated()
    if duplicated.any():
        rows = duplicated.arg_true()
        raise table.error(f"duplicate id '{ids[int(rows[1])]}' (also at row {table.row(int(rows[0]))})",
                          int(rows[1]), column)


def check_not_empty(table: Table, columns: tuple[str, ...], what: str) -> None:
    """Refuse rows where every one of `columns` is empty: such a row has no text to embed."""
    present = [c for c in columns if c in table.frame.columns]
    empty = table.frame.select(pl.all_horizontal(pl.col(c).is_null() for c in present)).to_series()
    if empty.any():
        index = int(empty.arg_true()[0])
        raise table.error(f"{what} '{table.frame['id'][index]}' has no text (all of {', '.join(present)} "
                          "are empty)", index, present[0])


def check_language(table: Table) -> None:
    """Every row needs a language: batching, mining and search filters all go by it."""
    language = table.frame["language"].is_null()
    if language.any():
        raise table.error("empty language", int(language.arg_true()[0]), "language")


def with_columns(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """Add the optional LECR columns a file leaves out, as nulls, and order columns canonically."""
    extra = [c for c in frame.columns if c not in columns]
    missing = [pl.lit(None, dtype=pl.String).alias(c) for c in columns if c not in frame.columns]
    return frame.with_columns(missing).select(*columns, *extra)


def breadcrumbs(table: Table) -> list[str]:
    """Ancestor titles, root first, for every topic; refuses dangling parents and cycles."""
    ids = table.frame["id"].to_list()
    titles = dict(zip(ids, table.frame["title"].fill_null("").to_list(), strict=True))
    parents = dict(zip(ids, table.frame["parent"].to_list(), strict=True))
    position = {topic: index for index, topic in enumerate(ids)}
    for topic, parent in parents.items():
        if parent is not None and parent not in parents:
            raise table.error(f"parent '{parent}' of topic '{topic}' is not a topic id", position[topic],
                              "parent")
    chains: dict[str, list[str]] = {}
    for topic in ids:
        path: list[str] = []
        node = parents[topic]
        seen = {topic}
        while node is not None and node not in chains:
            if node in seen:
                raise table.error(f"topic '{topic}' is its own ancestor (cycle through '{node}')",
                                  position[topic], "parent")
            seen.add(node)
            path.append(node)
            node = parents[node]
        prefix = [] if node is None else chains[node] + [titles[node]]
        # path holds the unresolved ancestors nearest first; fill their chains root-down.
        for ancestor in reversed(path):
            chains[ancestor] = prefix
            prefix = prefix + [titles[ancestor]]
        chains[topic] = prefix
    return [breadcrumb_path(chains[topic]) for topic in ids]


def breadcrumb_path(titles: Sequence[str | None]) -> str:
    """A topic's breadcrumbs from its ancestors' titles, root first: how every topic text names its place."""
    return BREADCRUMB_SEPARATOR.join(t for t in titles if t)


def parse_flags(table: Table, column: str) -> pl.Series:
    values = table.frame[column].fill_null("").str.to_lowercase()
    bad = ~values.is_in(sorted(TRUE_VALUES | FALSE_VALUES))
    if bad.any():
        index = int(bad.arg_true()[0])
        raise table.error(f"'{table.frame[column][index]}' is not a boolean (True/False)", index, column)
    return values.is_in(sorted(TRUE_VALUES))


def read_correlations(table: Table, topic_ids: set[str], content_ids: set[str]) -> pl.DataFrame:
    """Explode `content_ids` into one (topic_id, content_id) row each, refusing unknown ids."""
    check_ids(table, "topic_id")
    for index, (topic, listed) in enumerate(table.frame.select("topic_id", "content_ids").iter_rows()):
        if topic not in topic_ids:
            raise table.error(f"topic '{topic}' is not in topics", index, "topic_id")
        if listed is None:
            raise table.error(f"topic '{topic}' lists no content ids", index, "content_ids")
        unknown = [c for c in listed.split() if c not in content_ids]
        if unknown:
            raise table.error(f"content id(s) {', '.join(unknown[:5])} not in content", index, "content_ids")
    return (table.frame.select("topic_id", pl.col("content_ids").str.split(" ").alias("content_id"))
            .explode("content_id").filter(pl.col("content_id") != "").unique(maintain_order=True))


def load_catalog(directory: str | Path, topics: str | Path | None = None,
                 correlations: str | Path | None = None) -> Catalog:
    """Read and validate a catalog; `topics`/`correlations` may come from other files (evaluation sets)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"catalog '{directory}': no such directory")
    paths: dict[str, Path | None] = {
        "topics": Path(topics) if topics else find_file(directory, "topics"),
        "content": find_file(directory, "content"),
        "correlations": Path(correlations) if correlations else find_file(directory, "correlations"),
    }
    for name in ("topics", "content"):
        if paths[name] is None:
            raise InputError(f"catalog '{directory}': no {name}.csv or {name}.parquet")
    for name, path in paths.items():
        if path is not None and not path.is_file():
            raise InputError(f"{name} file '{path}': no such file")

    topic_table = read_table(paths["topics"], "topics")  # type: ignore[arg-type]
    content_table = read_table(paths["content"], "content")  # type: ignore[arg-type]
    for table, what, text_columns in ((topic_table, "topic", ("title", "description")),
                                      (content_table, "content item", ("title", "description", "text"))):
        check_ids(table)
        check_not_empty(table, text_columns, what)
        check_language(table)
    crumbs = breadcrumbs(topic_table)
    topic_frame = with_columns(topic_table.frame, TOPIC_COLUMNS).with_columns(
        pl.Series("breadcrumbs", crumbs, dtype=pl.String))
    content_frame = with_columns(content_table.frame, CONTENT_COLUMNS)

    if paths["correlations"] is not None:
        pairs = read_correlations(read_table(paths["correlations"], "correlations"),
                                  set(topic_frame["id"]), set(content_frame["id"]))
    else:
        pairs = pl.DataFrame(schema={"topic_id": pl.String, "content_id": pl.String})
    has_content = (parse_flags(topic_table, "has_content") if "has_content" in topic_table.frame.columns
                   else topic_frame["id"].is_in(pairs["topic_id"].to_list()))
    level = topic_frame["level"].cast(pl.Int64, strict=False)
    topic_frame = topic_frame.with_columns(has_content.alias("has_content"), level.alias("level"))
    files = tuple(p for p in paths.values() if p is not None)
    return Catalog(topic_frame, content_frame, pairs, files)
