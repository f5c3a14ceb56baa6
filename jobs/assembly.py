"""Builds the jobs room on a data plane: store, scheduler, service (for the API) and runner."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from jobs.runner import JobRunner
from jobs.scheduler import Scheduler
from jobs.service import JobService
from jobs.redis_store import RedisJobStore
from jobs.store import JobStorage, JobStore
from serving.assembly import DataPlaneParts
from wattgate.errors import BadRequest
from wattgate.settings import Settings

log = logging.getLogger("wattgate.jobs")


@dataclass
class JobsParts:
    store: JobStorage
    scheduler: Scheduler
    service: JobService
    runner: JobRunner
    task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the runner on the running event loop (the serving loop of this replica); idempotent."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.runner.run_forever())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.store.close()


def open_store(settings: Settings) -> JobStorage:
    """The store ``jobs.store`` names: SQLite under server.state_dir, or Redis."""
    js = settings.jobs
    if js.store == "redis":
        url = js.redis_url or settings.auth.redis_url
        if not url:
            raise BadRequest("jobs.store is redis but neither jobs.redis_url nor auth.redis_url is set")
        return RedisJobStore(url, js.redis_prefix, js.result_ttl_s)
    return JobStore(js.file(settings.server.state_dir))


def build_jobs(data: DataPlaneParts) -> JobsParts | None:
    settings = data.settings
    js = settings.jobs
    if not js.enabled:
        return None
    store = open_store(settings)
    scheduler = Scheduler(js, data.provider)
    regions = data.router.regions
    runner = JobRunner(js, store, scheduler, data.dataplane, regions, data.metrics,
                       data.ledger_sink.ledger if data.ledger_sink is not None else None, keys=data.keys)
    service = JobService(js, store, scheduler, data.dataplane, regions, on_change=runner.wake)
    log.info("deferrable jobs: store %s", store.where)
    return JobsParts(store, scheduler, service, runner)
