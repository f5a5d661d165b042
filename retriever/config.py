"""Stage 1's options, light to import: the indexing job's and the hybrid candidates' configs and the names and
defaults they offer, without torch, FAISS or polars, so the CLI builds its parser without them."""

from __future__ import annotations

from dataclasses import dataclass

from edurank.options import option

DEFAULT_KS = (1, 5, 10, 20, 25, 50, 100)  # of the recall@k figures
INDEX_TYPES = ("flat", "ivf", "hnsw")  # FAISS indexes a ContentIndex builds
ENGINES = ("local", "ray")  # where the indexing job embeds the catalog (retriever/index_engines.py)


@dataclass(frozen=True)
class CandidateConfig:
    """How many candidates each source contributes per query."""

    dense: int = option(64, "dense (bi-encoder) candidates per topic", flag="--dense-candidates", minimum=1)
    lexical: int = option(32, "lexical (TF-IDF) candidates per topic, in the topic's language (0: none)",
                          flag="--lexical-candidates", minimum=0)


@dataclass(frozen=True)
class IndexConfig:
    """The indexing job's options; `edurank index` takes its flags from here."""

    index_type: str = option("flat", "flat: exact; ivf, hnsw: approximate, for catalogs in the millions",
                             choices=INDEX_TYPES)
    nlist: int | None = option(None, "IVF lists (default ~4 sqrt(n))", minimum=1)
    batch_size: int = option(32, "texts per encoder batch", minimum=1)
    lexical: bool = option(True, "also build the character n-gram TF-IDF index (hybrid candidates)")
    topics: bool = option(True, "also store the catalog's topic vectors (the ranker's reverse and neighbours "
                                "features)")
    companion: str | None = option(None, "also store a second encoder's vectors ('bundled' or a model "
                                         "directory), for a ranker trained with --companion", metavar="MODEL")
    engine: str = option("local", "where the content is embedded: local (this process) or ray (Ray Data "
                                  "map_batches over encoder actors)", choices=ENGINES)
    ray_address: str | None = option(None, "a Ray cluster to run on (default: start Ray on this machine); "
                                           "its workers must see the model at the same path", metavar="ADDRESS")
    ray_actors: int = option(2, "encoder actors on Ray, one model each", minimum=1)
    incremental: bool = option(False, "embed only content added or changed since the latest version under --out "
                                      "(same encoder); reuse the other vectors, drop deleted items")
