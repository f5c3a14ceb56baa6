"""Locust scenarios for the Open Inference Protocol: steady, cache-heavy, burst, diurnal and bad-input.

Pick scenarios by class (``locust -f loadtests/locustfile.py SteadyUser CacheHeavyUser``) or by
tag (``--tags cache-heavy binary``); tags ``json``/``binary`` pick the tensor encoding. Parameters
come from ``--wg-*`` flags or their ``WATTGATE_LOAD_*`` environment variables (``locust --help``).
The one shape class drives the user count: steady, a 10x burst, or a day compressed into the run.

    locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 30s --host http://127.0.0.1:8000 \
        --csv loadtests/results/run SteadyUser
"""

from __future__ import annotations

import json
import random
import threading
import urllib.request

from locust import FastHttpUser, LoadTestShape, events, tag, task
from locust.user.wait_time import constant_throughput

from loadtests.payloads import BodyFactory, ZipfSampler, factory_from_metadata, malformed_bodies, parse_models
from loadtests.shapes import pick_profile, users_at
from loadtests.tally import ResponseTally

TALLY = ResponseTally()
_FACTORIES: list[BodyFactory] = []
_WEIGHTS: list[float] = []
_ZIPF: dict[int, ZipfSampler] = {}
_LOCK = threading.Lock()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    add = parser.add_argument
    add("--wg-models", env_var="WATTGATE_LOAD_MODELS", default="digits:fp32", help="model mix: name[:variant][@weight],...")
    add("--wg-profile", env_var="WATTGATE_LOAD_PROFILE", default="auto", choices=["auto", "steady", "burst", "diurnal"],
        help="user-count profile; auto = burst/diurnal when that class or tag is selected, else steady")
    add("--wg-user-rps", env_var="WATTGATE_LOAD_USER_RPS", type=float, default=10.0, help="requests/s per user; 0 = back to back")
    add("--wg-rows", env_var="WATTGATE_LOAD_ROWS", type=int, default=1, help="rows per request")
    add("--wg-binary-share", env_var="WATTGATE_LOAD_BINARY_SHARE", type=float, default=0.5, help="share of binary-tensor requests")
    add("--wg-bad-share", env_var="WATTGATE_LOAD_BAD_SHARE", type=float, default=0.05, help="share of malformed requests (BadInputUser)")
    add("--wg-zipf-s", env_var="WATTGATE_LOAD_ZIPF_S", type=float, default=1.1, help="Zipf exponent of CacheHeavyUser's inputs")
    add("--wg-burst-factor", env_var="WATTGATE_LOAD_BURST_FACTOR", type=float, default=10.0, help="burst height over the base users")
    add("--wg-day-s", env_var="WATTGATE_LOAD_DAY_S", type=float, default=0.0, help="seconds per compressed day (0 = the run time)")
    add("--wg-tally", env_var="WATTGATE_LOAD_TALLY", default="", help="where to write response tallies (default: CSV prefix + _wattgate.json)")


@events.init.add_listener
def _drop_classes_without_tasks(environment, **_) -> None:
    # ``--tags burst`` would otherwise leave task-less classes that locust refuses to start.
    environment._filter_tasks_by_tags()
    kept = [u for u in environment.user_classes if u.tasks]
    if kept:
        environment.user_classes[:] = kept


@events.test_start.add_listener
def _prepare(environment, **_) -> None:
    opts = environment.parsed_options
    with _LOCK:
        if _FACTORIES:
            return
        for target in parse_models(opts.wg_models):
            _FACTORIES.append(factory_from_metadata(target, _metadata(environment.host, target.name), opts.wg_rows))
            _WEIGHTS.append(target.weight)
    TALLY.started(profile=_profile(environment))


@events.request.add_listener
def _timed(response_time, exception, **_) -> None:
    TALLY.observe_request(float(response_time), exception is not None)


@events.quitting.add_listener
def _write_tally(environment, **_) -> None:
    opts = environment.parsed_options
    path = opts.wg_tally or (f"{opts.csv_prefix}_wattgate.json" if opts.csv_prefix else "")
    if path:
        TALLY.write(path)


def _metadata(host: str | None, model: str) -> dict | None:
    if not host:
        return None
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/v2/models/{model}", timeout=10) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _text(resp) -> str | None:
    """The body as text for a server that does not mirror parameters into headers (binary bodies: None)."""
    try:
        return resp.content.decode()
    except (UnicodeDecodeError, AttributeError):
        return None


def _profile(environment) -> str:
    opts = environment.parsed_options
    return pick_profile(opts.wg_profile, list(opts.user_classes or []), opts.tags)


class OipUser(FastHttpUser):
    """Shared plumbing: pick a model, an encoding, send, check, tally the response's energy fields."""

    abstract = True

    def wait_time(self) -> float:
        rps = self.environment.parsed_options.wg_user_rps
        return constant_throughput(rps)(self) if rps > 0 else 0.0

    def _factory(self) -> BodyFactory:
        return random.choices(_FACTORIES, weights=_WEIGHTS)[0] if len(_FACTORIES) > 1 else _FACTORIES[0]

    def _binary(self) -> bool:
        opts = self.environment.parsed_options
        tags = set(opts.tags or ())
        if "binary" in tags and "json" not in tags:
            return True
        if "json" in tags and "binary" not in tags:
            return False
        return random.random() < opts.wg_binary_share

    def infer(self, item: int, scenario: str) -> None:
        factory = self._factory()
        binary = self._binary()
        body, headers = factory.body(item, binary)
        name = f"{factory.target.label} {'binary' if binary else 'json'} {scenario}"
        with self.client.post(factory.path, data=body, headers=headers, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            TALLY.observe(resp.headers, None if "x-cache" in resp.headers else _text(resp))


class SteadyUser(OipUser):
    """The model mix at a constant rate, inputs cycling through the dataset (few cache repeats)."""

    weight = 1

    @tag("steady", "json", "binary")
    @task
    def steady(self) -> None:
        self.infer(random.randrange(1 << 30), "steady")


class CacheHeavyUser(OipUser):
    """Inputs drawn from a Zipf distribution: popular inputs repeat, as real traffic does."""

    weight = 1

    @tag("cache-heavy", "json", "binary")
    @task
    def cache_heavy(self) -> None:
        factory = self._factory()
        with _LOCK:
            sampler = _ZIPF.get(factory.items)
            if sampler is None:
                sampler = _ZIPF[factory.items] = ZipfSampler(factory.items, self.environment.parsed_options.wg_zipf_s)
        self.infer(sampler.draw(), "zipf")


class BadInputUser(OipUser):
    """Mostly valid requests plus a small share of malformed ones, each of which must come back 4xx."""

    weight = 1

    @tag("bad-input", "json", "binary")
    @task
    def maybe_bad(self) -> None:
        if random.random() >= self.environment.parsed_options.wg_bad_share:
            self.infer(random.randrange(1 << 30), "valid")
            return
        kind, path, body, headers = random.choice(malformed_bodies(self._factory().target.name))
        with self.client.post(path, data=body, headers=headers, name=f"bad-input {kind}", catch_response=True) as resp:
            if 400 <= resp.status_code < 500:
                resp.success()
            elif resp.status_code >= 500:
                resp.failure(f"malformed input ({kind}) answered {resp.status_code}: server error instead of 4xx")
            else:
                resp.failure(f"malformed input ({kind}) answered {resp.status_code}: accepted instead of 4xx")


class BurstUser(OipUser):
    """Steady traffic under the burst profile: base users, then a 10x spike for a fifth of the run."""

    weight = 1

    @tag("burst", "json", "binary")
    @task
    def burst(self) -> None:
        self.infer(random.randrange(1 << 30), "burst")


class DiurnalUser(OipUser):
    """Steady traffic under the diurnal profile: a day's demand curve compressed into the run."""

    weight = 1

    @tag("diurnal", "json", "binary")
    @task
    def diurnal(self) -> None:
        self.infer(random.randrange(1 << 30), "diurnal")


class WattgateShape(LoadTestShape):
    """Users over time from loadtests.shapes; reads -u/-r/-t like a run without a shape would."""

    use_common_options = True

    def tick(self):
        env = self.runner.environment
        opts = env.parsed_options
        t = self.get_run_time()
        run_time = float(opts.run_time or 60)
        if t >= run_time:
            return None
        profile = _profile(env)
        users = users_at(profile, t, int(opts.num_users or 1), run_time, factor=opts.wg_burst_factor, day_s=opts.wg_day_s or run_time)
        # Shape changes must be sharp (both ways) for a burst to be a burst; the steady ramp follows -r.
        spawn_rate = float(opts.spawn_rate or 1)
        if profile != "steady":
            spawn_rate = max(spawn_rate, float(opts.num_users or 1) * float(opts.wg_burst_factor))
        return users, spawn_rate
