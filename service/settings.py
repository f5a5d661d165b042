"""The one settings object: paths, limits and threads, read from `EDURANK_*` environment variables.

Artifacts live under `EDURANK_ARTIFACTS` (default `artifacts/`) as `<kind>/<version>/` folders with a
LATEST file: `retriever/`, `index/`, `ranker/`, `reranker/`, `essays/` and `classifier/`. A path setting left empty
falls back to that layout, and to the bundled MiniLM and sample catalog where nothing was trained.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from edurank import SAMPLE_CATALOG
from edurank.errors import InputError

MIN_KEY_CHARS = 16
HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDURANK_", extra="ignore")

    artifacts: Path = Field(Path("artifacts"), description="root of the artifact kinds' versions")
    catalog: Path = Field(SAMPLE_CATALOG, description="catalog served (topics by id, content texts)")
    retriever: str | None = Field(None, description="default: <artifacts>/retriever if trained, else bundled")
    index: Path | None = Field(None, description="default: <artifacts>/index (<artifacts>/index-<backend> for ONNX)")
    reranker: str | None = Field(None, description="default: <artifacts>/reranker if trained, else none")
    ranker: str | None = Field(None, description="LightGBM second stage; default: <artifacts>/ranker if trained, "
                                                 "else one trained at start-up when `train_ranker`")
    train_ranker: bool = Field(True, description="with no ranker, train one at start-up on the catalog's "
                                                 "correlations when the served retriever never saw them (seconds)")
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="how the transformer models run (retriever, cross-encoder, essay scorer, classifier): "
                             "onnx / onnx-int8 serve the newest `edurank export` of each under <artifacts>/exports "
                             "(start-up is refused without one)")
    companion: str | None = Field(None, description="encoder of the index's companion vectors, for a ranker "
                                                    "with the companion group; default: the one the index names")
    essays: str | None = Field(None, description="essay scorer; default: <artifacts>/essays if trained, else none")
    classifier: str | None = Field(None, description="misconception classifier; default: <artifacts>/classifier "
                                                     "if trained, else none")
    build_index: bool = Field(True, description="build the index at start-up when missing or stale")
    background_load: bool = Field(True, description="load models after start-up, /ready says when done")
    watch_seconds: float = Field(0.0, ge=0, description="how often to check the artifacts' LATEST files and swap "
                                                        "in newly published versions (0: only on POST /admin/reload)")
    retry_seconds: float = Field(5.0, ge=0, description="while the index side is not served (no index published "
                                                        "yet, or none that loads), how often to look for a newly "
                                                        "published version and load it (0: never)")

    candidates: int = Field(32, ge=1, description="default number of retrieved candidates to rerank")
    max_candidates: int = Field(100, ge=1, description="most candidates a /recommend request may ask to rerank")
    default_top_k: int = Field(10, ge=1, description="results of a /recommend request that gives no top_k")
    max_top_k: int = Field(50, ge=1, description="most results a /recommend request may ask for")
    max_text_chars: int = Field(5000, ge=1, description="longest accepted text field")
    max_rerank_candidates: int = Field(64, ge=1, description="most candidate texts per /rerank call")

    max_essay_chars: int = Field(20_000, ge=1, description="longest accepted essay")
    max_essays: int = Field(16, ge=1, description="most essays per /score-essay call")

    max_response_chars: int = Field(2000, ge=1, description="longest accepted answer or explanation (/classify)")
    max_responses: int = Field(64, ge=1, description="most responses per /classify call")

    live_dir: Path | None = Field(None, description="journal of the live catalog (content added through /embed-content "
                                                     "or /catalog/items); default: <index>-live beside the index")
    compact_rows: int = Field(5000, ge=1, description="live rows (added, replaced or deleted since the published index "
                                                      "version) past which they are compacted into a new version")
    max_upsert_items: int = Field(256, ge=1, description="most items per /embed-content or /catalog/items call")
    max_topics: int = Field(32, ge=1, description="most topics per Studio /recommend or /embed-topics call")
    studio_max_items: int = Field(50, ge=1, description="most recommendations per topic on Studio's /recommend with "
                                                        "override_threshold=True (kept ones first, then those below "
                                                        "the tuned cut)")

    feedback_db: str | None = Field(None, description="where decisions on recommended items are recorded (POST "
                                                      "/feedback, the review page): a SQLite file or a "
                                                      "postgresql://USER:PASSWORD@HOST/DB URL; default: "
                                                      "<artifacts>/feedback.sqlite")
    max_feedback_items: int = Field(256, ge=1, description="most decisions per POST /feedback call")

    batch_max_items: int = Field(32, ge=1, description="most texts per forward pass of a batched model")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits after its first request "
                                                             "for others to join (0: take what is queued)")
    batch_max_tokens: int = Field(16384, ge=1, description="most tokens (estimated as characters / 4, each text "
                                                           "cut at its model's limit) per forward pass of a batched "
                                                           "model: long texts make smaller batches")
    batch_max_pairs: int = Field(128, ge=1, description="most (topic, item) pairs per cross-encoder batch")
    batch_max_essays: int = Field(8, ge=1, description="most essays per essay-scorer batch (each is several "
                                                        "windows)")
    max_queue: int = Field(1024, ge=1, description="items (texts, pairs) queued per model before requests get "
                                                         "503 + Retry-After")
    max_embed_inputs: int = Field(256, ge=1, description="most texts per /v1/embeddings or /embed call")
    max_tokens: int | None = Field(None, ge=8, description="lower the retriever's token limit below the model's own "
                                                         "(a trained retriever's recorded limit, else its "
                                                         "configuration's: 256 for the bundled MiniLM); texts are "
                                                         "cut there by /embed, /v1/embeddings and the index alike")

    threads: int | None = Field(None, ge=1, description="threads of torch, FAISS, ONNX Runtime and LightGBM "
                                                        "(default: one per core)")
    spin_threads: bool = Field(False, description="ONNX Runtime's idle threads spin waiting for its next call (a "
                                                  "little faster where nothing else needs the cores; off: they "
                                                  "sleep and leave the cores to the stages after the encoder)")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface; see api_key "
                                               "before exposing it)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0: any free one)")
    # scale-out (edurank.service.scale): the same app as a Ray Serve deployment, `pip install edurank[scale]`
    replicas: int = Field(1, ge=1, description="copies of the app serving behind one port on Ray Serve (more than "
                                               "1: each loads the models; threads default to the cores / replicas)")
    ray_address: str | None = Field(None, description="Ray cluster to serve on (`auto`, or ray://HOST:10001); given, "
                                                      "the app runs on Ray Serve even with one replica (default: a "
                                                      "local Ray started for the service)")

    # access and limits: what makes the service safe to expose beyond loopback
    api_key: SecretStr | None = Field(None, description="key of the admin routes (off without one) and of any route "
                                                        "set to need it; sent as `Authorization: Bearer KEY` or "
                                                        "`X-API-Key: KEY`, compared in constant time, never logged")
    require_key: bool = Field(False, description="the inference routes need the key too")
    docs_access: Literal["on", "off", "key"] = Field("on", description="/docs and /openapi.json: served, off (404) "
                                                                        "or behind the key")
    metrics_access: Literal["on", "off", "key"] = Field("on", description="/metrics: served, off (404) or behind "
                                                                           "the key")
    rate_limit: float = Field(0.0, ge=0, description="inference requests per second per client (0: no limit); over "
                                                     "it: 429 with Retry-After")
    rate_burst: int = Field(20, ge=1, description="requests a client may send at once before rate_limit applies")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: "
                                          "addresses or networks, comma-separated (e.g. 10.0.0.5,172.16.0.0/12; *: "
                                          "any peer); empty: none, so rate limits key on the peer's own address")
    max_body_bytes: int = Field(4 << 20, ge=1, description="largest request body; a larger one gets 413 before it "
                                                           "is read")
    body_timeout: float = Field(30.0, gt=0, description="seconds a request body may take to arrive (then 408)")
    header_timeout: float = Field(10.0, gt=0, description="seconds a connection may take to send a request's "
                                                          "headers before it is closed")
    keep_alive: int = Field(5, ge=1, description="seconds an idle keep-alive connection stays open")
    max_connections: int = Field(1024, ge=1, description="open connections (or requests in progress) beyond which "
                                                         "new requests get 503")
    cors_origins: list[str] = Field(default_factory=list, description="origins browsers may call from, as a JSON "
                                                                      "list (empty: CORS off)")

    @field_validator("api_key", mode="before")
    @classmethod
    def strong_key(cls, value: Any) -> Any:
        """An empty key (an unset variable passed through, as compose does) means none; a short one is
        refused rather than trusted."""
        if value in ("", None):
            return None
        secret = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"use at least {MIN_KEY_CHARS} characters (e.g. `openssl rand -hex 24`)")
        return value

    @field_validator("host")
    @classmethod
    def listenable_host(cls, value: str) -> str:
        """An IP address or a hostname's syntax (no DNS lookup, which could hang the start): `999.1.1.1` is
        neither, so it is refused here rather than by a traceback once the app has loaded."""
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            labels = value.removesuffix(".").split(".")
        if len(value) > 253 or not all(HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
            raise ValueError(f"{value[:60]!r} is neither an IP address nor a host name")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def proxy_networks(cls, value: Any) -> Any:
        """Comma-separated addresses or networks (as uvicorn's --forwarded-allow-ips takes them), each checked."""
        entries = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        for entry in entries if isinstance(entries, list) else []:
            if entry != "*":
                try:
                    ipaddress.ip_network(str(entry), strict=False)
                except ValueError:
                    raise ValueError(f"{str(entry)[:60]!r} is not an IP address or network") from None
        return entries

    @model_validator(mode="after")
    def consistent(self) -> Settings:
        """Settings that contradict each other are refused at start, naming both, rather than turning every
        request into an error. A default left unset follows a lower limit instead."""
        for default, limit in (("default_top_k", "max_top_k"), ("candidates", "max_candidates")):
            if default not in self.model_fields_set:
                setattr(self, default, min(getattr(self, default), getattr(self, limit)))
            elif getattr(self, default) > getattr(self, limit):
                raise ValueError(f"EDURANK_{default.upper()} ({getattr(self, default)}) is above "
                                 f"EDURANK_{limit.upper()} ({getattr(self, limit)})")
        keyed = {"require_key": self.require_key, "docs_access": self.docs_access == "key",
                 "metrics_access": self.metrics_access == "key"}
        needing = [f"EDURANK_{name.upper()}" for name, needs in keyed.items() if needs]
        if needing and self.api_key is None:
            raise ValueError(f"{needing[0]} asks for the key but EDURANK_API_KEY is not set: nobody could get in")
        return self

    @property
    def index_root(self) -> Path:
        """The configured index, else `<artifacts>/index`; for an ONNX backend `<artifacts>/index-<backend>`: its
        vectors come from the export (a fingerprint of their own), so switching backends never rebuilds the
        other backend's index."""
        if self.index is not None:
            return self.index
        return self.artifacts / ("index" if self.backend == "torch" else f"index-{self.backend}")

    @property
    def live_root(self) -> Path:
        """The live catalog's journal: the configured one, else `<index>-live` (one per index lineage)."""
        return self.live_dir or self.index_root.with_name(self.index_root.name + "-live")

    @property
    def feedback_target(self) -> str:
        """The feedback database: the configured file or URL, else `<artifacts>/feedback.sqlite`."""
        return self.feedback_db or str(self.artifacts / "feedback.sqlite")

    def named_paths(self) -> list[tuple[Path | str, str]]:
        """Each configured path with the setting that names it, so messages shown to clients can say
        `$EDURANK_ARTIFACTS/index` instead of a server path."""
        paths = {"artifacts": self.artifacts, "catalog": self.catalog, "retriever": self.retriever,
                 "index": self.index, "reranker": self.reranker, "ranker": self.ranker, "essays": self.essays,
                 "classifier": self.classifier, "companion": self.companion,
                 "live_dir": self.live_dir, "feedback_db": self.feedback_db}
        return [(path, f"$EDURANK_{name.upper()}") for name, path in paths.items() if path]

    def artifact(self, explicit: str | Path | None, kind: str) -> Path | None:
        """An explicit path, else `<artifacts>/<kind>` when it holds a version, else None."""
        if explicit:
            return Path(explicit)
        root = self.artifacts / kind
        return root if root.is_dir() and any(root.glob("*/manifest.json")) else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a bad value is an InputError naming its variable (the CLI's exit 2), and
    settings that contradict each other one naming both."""
    try:
        return Settings(**overrides)
    except SettingsError as err:  # a list or object that is not JSON, refused before validation
        field = re.search(r'field "(\w+)"', str(err))
        name = f"EDURANK_{field.group(1).upper()}" if field else "an EDURANK_ variable"
        raise InputError(f"{name}: not valid JSON ({err.__cause__ or err}); give lists as JSON, e.g. "
                         '["https://school.example"]') from None
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a model validator's: the message names the variables
            raise InputError(message) from None
        raise InputError(f"EDURANK_{str(first['loc'][0]).upper()}: {message}") from None
