"""Several worker processes behind one listening socket: `sunshine serve --workers N`.

The parent validates the registry and materializes the service's state once (or reuses the
generation already built for this data and these champions), then starts N uvicorn workers.
Each worker reads that state, read-only: none of them rebuilds anyone's features, and the
operating system keeps one copy of the matrices for all. The parent watches the registry and
materializes a new generation when it changes; each worker follows `CURRENT`, and the service
database's reload counter, every few seconds (serving.processes.refresh.Follower). The parent
holds the listening socket and hands each connection to the next ready worker
(serving.processes.dispatch).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.indicators.inputs import load_indicator_config, read_population
from features.storage.store import Store, open_registry
from serving.api.admission import LEAST, MOST, Bound
from serving.processes.dispatch import Dispatcher, HandedServer
from serving.processes.refresh import DataWatcher, Follower
from serving.state.champions import Loaded, load_champions
from serving.state.indicator_source import indicator_source
from serving.state.materialize import FAILED, current, ensure_state, materialize, open_state
from serving.state.service import ServiceState

if TYPE_CHECKING:
    from fastapi import FastAPI

CONFIG_ENV = "SUNSHINE_WORKER_CONFIG"
FOLLOW_S = 2.0
# each worker's DuckDB cache of the shared registry file: it reads, never holds, the registry
WORKER_DUCKDB_MEMORY = "512MB"


@dataclass(frozen=True)
class WorkerConfig:
    data: str
    state_dir: str
    audit_db: str
    service_db: str
    rising: float
    interventions: str | None = None
    indicators_config: str | None = None
    population: str | None = None
    external: str | None = None
    # the bound of requests in hand (serving.api.admission.Bound), as plain numbers: the
    # configuration goes to the workers as JSON
    max_in_flight: int = MOST
    min_in_flight: int = LEAST

    @property
    def in_flight(self) -> Bound:
        return Bound(self.max_in_flight, self.min_in_flight)


def _optional(path: str | None) -> Path | None:
    return Path(path) if path else None


def prepare(cfg: WorkerConfig, lenient: bool, say) -> Path:
    """The generation the workers will serve: reused when it was built from this registry,
    as it stands, for the current champions; else built now."""
    chosen = ensure_state(cfg.data, Path(cfg.state_dir), cfg.rising, lenient, say)
    gc.collect()  # the workers read the state: the parent need not hold it
    return chosen


def watch_registry(cfg: WorkerConfig, interval_s: float, lenient: bool, say) -> DataWatcher:
    """The parent's watcher: a changed registry becomes a new generation for the workers."""
    root = Path(cfg.state_dir)

    def renew() -> str:
        gen = materialize(Store(cfg.data, lenient=lenient), load_champions(), root, cfg.rising)
        (root / FAILED).unlink(missing_ok=True)
        return f"materialized {gen.name}"

    def fail(reason: str) -> None:
        (root / FAILED).write_text(reason)

    # the workers read the external indicators with each generation: a new file, a new one
    inputs = (Path(cfg.external),) if cfg.external else ()
    return DataWatcher(open_registry(cfg.data), interval_s, renew, fail, say, inputs)


def run(cfg: WorkerConfig, workers: int, listener: socket.socket, proxies: str, say) -> None:
    """Start the workers and hand them the connections `listener` accepts, in turn
    (serving.processes.dispatch), and keep them running: one that dies is started again; SIGTERM or
    SIGINT stops them all."""
    os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
    os.environ.setdefault("SUNSHINE_DUCKDB_MEMORY", WORKER_DUCKDB_MEMORY)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: nothing of the parent
    dispatcher = Dispatcher(listener)
    threading.Thread(target=dispatcher.serve_forever, name="dispatch", daemon=True).start()

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        channel = dispatcher.attach(slot)
        proc = spawn.Process(target=_worker, args=(channel, proxies), daemon=False)
        proc.start()
        channel.close()  # the worker has its own copy
        return proc

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    procs = [start(slot) for slot in range(workers)]
    while not stopping.wait(1.0):
        for slot, proc in enumerate(procs):
            if not proc.is_alive():
                say(f"worker {proc.pid} exited ({proc.exitcode}); starting another")
                procs[slot] = start(slot)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=30)


def _worker(channel: socket.socket, proxies: str) -> None:
    """One worker process: uvicorn serving `app()` on the connections the parent hands it."""
    import uvicorn

    config = uvicorn.Config(
        "serving.processes.workers:app",
        factory=True,
        log_level="warning",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    config.load()
    HandedServer(config, channel).run()


def app() -> FastAPI:
    """The factory each worker's uvicorn calls: the API and pages over the current generation."""
    from models.tracking import configure
    from serving.access.audit import open_audit
    from serving.access.tokens import TokenStore
    from serving.app import create_app
    from serving.scoring.interventions import load_interventions
    from serving.state.heap import freeze_heap
    from serving.storage.web_records import WebStore

    cfg = WorkerConfig(**json.loads(os.environ[CONFIG_ENV]))
    configure(existing=True)
    root = Path(cfg.state_dir)
    settings = load_indicator_config(_optional(cfg.indicators_config))
    people = read_population(_optional(cfg.population))

    def opened(gen: Path, loaded: Loaded) -> ServiceState:
        return open_state(
            gen,
            cfg.data,
            loaded,
            lambda store: indicator_source(store, settings, people, _optional(cfg.external)),
        )

    gen = current(root)
    if gen is None:
        raise SystemExit(f"{root}: no materialized state; run `sunshine materialize` first")
    api = create_app(
        opened(gen, load_champions()),
        TokenStore.load(),
        open_audit(cfg.audit_db),
        load_interventions(_optional(cfg.interventions)),
        WebStore(cfg.service_db),
        cfg.in_flight,
    )
    Follower(api.state.services, FOLLOW_S, opened, root).start()
    freeze_heap()
    return api
