"""`edurank serve --replicas N [--ray-address A]`: the same FastAPI app (`create_app`) as a Ray Serve deployment of
N replicas behind one port, for more cores or machines than one process uses well.

- Start-up work happens once, before any replica: `prepare` loads the registry in one Ray task (building the index
  and training a first ranker where settings allow, migrating the feedback store), then the replicas start with
  `build_index` and `train_ranker` off and only load; artifacts are read-only and shared (on several machines, a
  shared path). Each replica loads the models (about 1 GB each) before Serve routes to it, with threads = the
  cluster's cores / replicas unless EDURANK_THREADS says otherwise.
- Reloads reach every replica: POST /admin/reload, on whichever replica it lands, asks the named `Reloads` actor
  for a new generation; every replica follows the generations (`follow_reloads`), swaps, and reports; the
  answer says how many swapped, or is a 409 saying how many did and why the others refused. It waits for the
  replicas alive now (each sends the actor a heartbeat), at most RELOAD_SECONDS: a dead one is not waited for.
- The rate limit holds across replicas: every replica takes tokens from one `RateLimiter` running as a named
  actor, so a client gets `rate_burst` requests in all, not per replica.
- The live catalog takes writes with one replica only: with several, /embed-content and /catalog/items answer 409
  (each replica would write its own journal into the same folder); publish with `edurank index --incremental`
  and POST /admin/reload instead.
- Connection limits: EDURANK_MAX_CONNECTIONS is split over the replicas (each takes max_connections / N requests
  at once, Serve's `max_ongoing_requests`) and as many wait at the proxy before 503 (`max_queued_requests`); the
  batch queues (EDURANK_MAX_QUEUE) and /metrics are per replica. Serve's proxy replaces uvicorn, so
  EDURANK_HEADER_TIMEOUT does not apply; EDURANK_KEEP_ALIVE does. The proxy believes X-Forwarded-For only from
  EDURANK_TRUSTED_PROXIES (its uvicorn reads FORWARDED_ALLOW_IPS, which `start` sets), as one process does.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.config import HTTPOptions
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edurank.errors import InputError
from edurank.service.errors import RequestError, public_message
from edurank.service.middleware import RateLimiter
from edurank.service.reload import reload_registry
from edurank.service.settings import Settings

log = logging.getLogger(__name__)
NAMESPACE = "edurank"
REPLICA_HEADER = "X-Edurank-Replica"  # which replica answered: each response says so
FOLLOW_SECONDS = 0.5  # how often a replica looks for a new reload generation
RELOAD_SECONDS = 120.0  # how long POST /admin/reload waits for every live replica's answer
ALIVE_SECONDS = 5.0  # a replica whose last heartbeat is older is not waited for (dead, or restarted as another)


def app_name(settings: Settings) -> str:
    """One served app per port: the Serve application's name and the prefix of its actors' names."""
    return f"edurank-{settings.port}"


class Reloads:
    """Reload generations of one served app (a named actor): a replica asks for one, every replica reports its
    outcome under it. `epoch` names this incarnation: restarted by Ray, it counts generations from 0 again."""

    def __init__(self) -> None:
        self.epoch, self.generation = uuid.uuid4().hex, 0
        self.outcomes: dict[int, dict[str, dict[str, Any]]] = {}
        self.awaited: set[int] = set()  # generations a reload_all still waits on: never pruned
        self.beats: dict[str, float] = {}  # replica -> its last heartbeat (monotonic)

    def ask(self) -> int:
        self.generation += 1
        self.outcomes = {g: o for g, o in self.outcomes.items()
                         if g > self.generation - 16 or g in self.awaited}  # bounded
        self.outcomes[self.generation] = {}
        self.awaited.add(self.generation)
        return self.generation

    def done(self, generation: int) -> None:
        self.awaited.discard(generation)

    def current(self) -> tuple[str, int]:
        return self.epoch, self.generation

    def beat(self, replica: str) -> None:
        self.beats[replica] = time.monotonic()

    def alive(self) -> list[str]:
        """The replicas that sent a heartbeat in the last ALIVE_SECONDS."""
        now = time.monotonic()
        self.beats = {replica: at for replica, at in self.beats.items() if now - at < 10 * ALIVE_SECONDS}
        return [replica for replica, at in self.beats.items() if now - at < ALIVE_SECONDS]

    def report(self, generations: list[int], replica: str, outcome: dict[str, Any]) -> None:
        for generation in generations:
            self.outcomes.setdefault(generation, {})[replica] = outcome

    def outcomes_of(self, generation: int) -> dict[str, dict[str, Any]]:
        return self.outcomes.get(generation, {})


class SharedLimiter:
    """The Guard's rate-limit backend on a replica: tokens taken from the one `RateLimiter` actor of the app. An
    unreachable actor lets the request through (logged) rather than failing it; Ray restarts the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def acquire(self, client: str) -> float:
        try:
            return float(await self.actor.take.remote(client))
        except ray.exceptions.RayError as err:
            log.warning("shared rate limiter unreachable, request let through: %s", err)
            return 0.0


def actor(settings: Settings, role: str, cls: type, *args: Any) -> Any:
    """The app's named actor `role`, owned by the driver (it goes when `edurank serve` does); replicas look it up
    by name."""
    return ray.remote(cls).options(name=f"{app_name(settings)}-{role}", namespace=NAMESPACE, num_cpus=0,
                                   max_restarts=-1).remote(*args)


def check_free(settings: Settings) -> None:
    """Refuse a second service on the same port of one cluster before anything of this one starts."""
    try:
        ray.get_actor(f"{app_name(settings)}-reloads", NAMESPACE)
    except ValueError:
        return
    raise InputError(f"another edurank service on this Ray cluster serves port {settings.port}; stop it or set "
                     "EDURANK_PORT")


def replica_settings(settings: Settings) -> tuple[Settings, float]:
    """What each replica runs with, and the cores it reserves: loading only (the driver built and trained first),
    in the foreground (Serve routes to a replica once its models are in), threads = the cluster's cores / replicas
    unless set."""
    share = ray.cluster_resources().get("CPU", 1.0) / settings.replicas
    threads = settings.threads or max(1, int(share))
    return settings.model_copy(update={"build_index": False, "train_ranker": False, "background_load": False,
                                       "threads": threads}), min(float(threads), share)


def prepare(settings: Settings) -> dict[str, Any]:
    """The start-up work done once, before the replicas: the registry loaded as one process would (building the
    index, training a first ranker where settings allow) and the feedback store opened (its migrations run)."""
    from edurank.feedback import FeedbackStore
    from edurank.service.registry import Registry

    FeedbackStore.open(settings.feedback_target).close()
    registry = Registry.load(settings)
    registry.close()
    return registry.versions


class ReplicaHeader:
    """Names the replica in every response (REPLICA_HEADER), so clients and tests see which one answered."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app, self.replica = app, replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REPLICA_HEADER] = self.replica
            await send(message)

        await self.app(scope, receive, named if scope["type"] == "http" else send)


@serve.ingress()
class Replica:
    """One replica: the app `create_app` builds, with the shared rate limiter, the reload broadcast and a thread
    that follows the app's reload generations."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.stop = settings, threading.Event()

    def __serve_build_asgi_app__(self) -> FastAPI:
        from edurank.service.app import create_app

        settings = self.settings
        replica = serve.get_replica_context().replica_tag
        name = app_name(settings)
        limiter = SharedLimiter(ray.get_actor(f"{name}-limits", NAMESPACE)) if settings.rate_limit > 0 else None
        reloads = ray.get_actor(f"{name}-reloads", NAMESPACE)
        app = create_app(settings, limiter)
        app.state.reload_all = lambda: reload_all(reloads, replica, settings.replicas)
        app.add_middleware(ReplicaHeader, replica=replica)
        threading.Thread(target=follow_reloads, args=(app, reloads, replica, self.stop), name="follow-reloads",
                         daemon=True).start()
        threading.Thread(target=heartbeat, args=(reloads, replica, self.stop), name="reload-heartbeat",
                         daemon=True).start()
        return app

    def __del__(self) -> None:
        self.stop.set()


def heartbeat(reloads: Any, replica: str, stop: threading.Event) -> None:
    """Tell the actor every FOLLOW_SECONDS that this replica is alive (apart from `follow_reloads`, which is busy
    while it reloads), so a reload waits for it, and not for one that died."""
    while not stop.wait(FOLLOW_SECONDS):
        try:
            reloads.beat.remote(replica)
        except Exception as err:  # noqa: BLE001 - the next beat retries; Ray restarts the actor
            log.warning("reload heartbeat not sent: %s", err)


def follow_reloads(app: FastAPI, reloads: Any, replica: str, stop: threading.Event) -> None:
    """Swap in the newest versions whenever a new reload generation is asked for (by any replica), and report
    the outcome; generations asked for while a reload runs are answered by the next one. Any failure is this
    replica's refusal: the thread lives on."""
    epoch, seen = ray.get(reloads.current.remote())  # generations asked before this replica loaded are in its load
    settings: Settings = app.state.settings
    while not stop.wait(FOLLOW_SECONDS):
        try:
            now_epoch, now = ray.get(reloads.current.remote())
            if now_epoch != epoch:  # the actor was restarted: it counts from 0 again
                epoch, seen = now_epoch, 0
            if now == seen:
                continue
            try:
                outcome = {"swapped": True, **reload_registry(app.state, settings, wait=True)}
            except RequestError as err:
                outcome = {"swapped": False, "message": err.message}
            except Exception as err:  # noqa: BLE001 - reported as this replica's refusal, never the thread's end
                log.exception("reload failed")
                outcome = {"swapped": False,
                           "message": public_message(f"{type(err).__name__}: {err}", settings.named_paths())}
            reloads.report.remote(list(range(seen + 1, now + 1)), replica, outcome)
            seen = now
        except Exception as err:  # noqa: BLE001 - the actor unreachable, say: looked for again next time
            log.warning("following reload generations: %s", err)


def reload_all(reloads: Any, replica: str, replicas: int) -> dict[str, Any]:
    """POST /admin/reload on a replica: a new generation every replica swaps to; this replica's versions and the
    count of replicas that swapped, or 409 when any refused or a live one did not answer within RELOAD_SECONDS
    (`replicas`: how many are deployed; those without a recent heartbeat are not waited for)."""
    generation = ray.get(reloads.ask.remote())
    deadline = time.monotonic() + RELOAD_SECONDS
    try:
        while True:
            outcomes, alive = ray.get([reloads.outcomes_of.remote(generation), reloads.alive.remote()])
            waiting = (set(alive) | {replica}) - set(outcomes)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(FOLLOW_SECONDS / 2)
    finally:
        reloads.done.remote(generation)
    swapped = sum(outcome["swapped"] for outcome in outcomes.values())
    refusals = sorted({outcome["message"] for outcome in outcomes.values() if not outcome["swapped"]})
    counted = len(outcomes) + len(waiting)
    if refusals or waiting:
        why = "; ".join(refusals + ([f"{len(waiting)} did not answer in {RELOAD_SECONDS:g} s"] if waiting else []))
        raise RequestError((), f"{swapped} of {counted} replicas swapped; the others keep serving the previous "
                               f"versions: {why}", 409)
    if counted < replicas:
        log.warning("reload: %d of %d replicas alive, all swapped", counted, replicas)
    own = outcomes.get(replica) or next(iter(outcomes.values()))
    return {"previous": own["previous"], "serving": own["serving"], "seconds": own["seconds"], "replicas": swapped}


@dataclass
class Served:
    """A deployed app: its settings, URL and the actors it shares (held here: they live as long as the handles)."""

    settings: Settings
    url: str
    actors: list[Any]


def start(settings: Settings) -> Served:
    """Deploy the app on the connected Ray cluster (after `prepare`, in a task of its own); returns once every
    replica serves."""
    try:
        versions = ray.get(ray.remote(num_cpus=0, max_calls=1)(prepare).remote(settings))
    except ray.exceptions.RayTaskError as err:  # what one process would report on /ready, as one line
        cause = err.cause if isinstance(err.cause, Exception) else err
        raise InputError(f"start-up failed: {type(cause).__name__}: {cause}") from None
    log.info("prepared %s; starting %d replicas", versions, settings.replicas)
    actors = [actor(settings, "reloads", Reloads)]
    if settings.rate_limit > 0:
        actors.append(actor(settings, "limits", RateLimiter, settings.rate_limit, settings.rate_burst))
    serving, cores = replica_settings(settings)
    per_replica = max(1, settings.max_connections // settings.replicas)
    # the proxy's uvicorn believes X-Forwarded-For from FORWARDED_ALLOW_IPS (127.0.0.1 when unset): the trusted
    # proxies only, none when empty; its actor inherits the controller's environment
    trusted = {"FORWARDED_ALLOW_IPS": ",".join(settings.trusted_proxies)}
    serve.start(http_options=HTTPOptions(host=settings.host, port=settings.port,
                                         keep_alive_timeout_s=settings.keep_alive),
                controller_options={"runtime_env": {"env_vars": trusted}})
    deployment = serve.deployment(Replica, name="edurank", num_replicas=settings.replicas,
                                  max_ongoing_requests=per_replica, max_queued_requests=settings.max_connections,
                                  ray_actor_options={"num_cpus": cores})
    serve.run(deployment.bind(serving), name=app_name(settings), route_prefix="/")
    return Served(settings, f"http://{settings.host}:{settings.port}", actors)


def stop(served: Served) -> None:
    """Remove the app and its actors from the cluster."""
    serve.delete(app_name(served.settings))
    for handle in served.actors:
        ray.kill(handle)


def interrupted(*_: object) -> None:
    """SIGTERM (a container stopping, a supervisor) ends the service as Ctrl-C does."""
    raise KeyboardInterrupt


def serve_replicas(settings: Settings) -> None:
    """`edurank serve` on Ray Serve: connect (or start a local Ray), deploy, serve until interrupted or
    terminated, then remove the app."""
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=NAMESPACE, logging_level=logging.WARNING)
    else:
        ray.init(namespace=NAMESPACE, include_dashboard=False, logging_level=logging.WARNING)
    signal.signal(signal.SIGTERM, interrupted)
    check_free(settings)
    try:
        served = start(settings)
        log.info("serving %d replicas at %s (Ctrl-C to stop)", settings.replicas, served.url)
        try:
            threading.Event().wait()
        finally:
            stop(served)
    except KeyboardInterrupt:
        pass
    except ray.exceptions.RayError as err:
        raise InputError(f"Ray Serve could not start the service: {err}") from None
    finally:
        ray.shutdown()
