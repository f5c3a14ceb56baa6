"""The models this process has loaded: cards, runtimes and batch queues, with Triton-style load/unload.

``ModelHost.run`` is the local pool: it runs a routed request on this process's own batchers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from concurrent.futures import ThreadPoolExecutor

from models.card import ModelCard
from models.registry import ModelRegistry
from models.runtime import RuntimeOptions, make_runtime
from models.text import TextPreprocessor
from models.work import TextWorkItem, WorkItem, WorkResult
from routing.pools import PoolJob
from serving.batching import Batcher
from wattgate.errors import ModelNotFound, Unavailable, WattgateError
from wattgate.settings import ModelServing, ModelsSettings
from wattgate.tensors import Tensor

log = logging.getLogger("wattgate.host")

# Models whose file is bigger than this run in a worker thread, not on the event loop.
_INLINE_MAX_BYTES = 4 * 1024 * 1024


def choose_batch_size(profile: dict, hardware: str, default: int) -> int:
    """The batch size with the least energy per inference in the variant's profile on this hardware.

    On a CPU, padded text batches cost more per sentence than single sentences; on a GPU batching is
    worth 100x. The measured profile decides instead of a guess; without one, ``default`` stands.
    """
    batches = (profile.get(hardware) or {}).get("batches") or {}
    best = None
    for size, row in batches.items():
        j = row.get("energy_j_per_inference")
        if j is not None and (best is None or j < best[1]):
            best = (int(size), j)
    return min(best[0], default) if best else default


def text_batching(profile: dict, hardware: str, serving: ModelServing) -> tuple[int, float]:
    """Batch cap and padding allowance for a text variant on this hardware.

    Where the profile (real sentences, padded to the longest) has batch 1 cheapest, padding is what
    loses: batches then only join sentences of equal token count, which pad nothing. Otherwise the
    profile's best batch size caps batches and ``text_max_pad_fraction`` bounds the padding.
    """
    best = choose_batch_size(profile, hardware, serving.max_batch_size)
    if best == 1 and (profile.get(hardware) or {}).get("batches"):
        return serving.max_batch_size, 0.0
    return best, serving.text_max_pad_fraction


@dataclass
class LoadedVersion:
    card: ModelCard
    batchers: dict[str, Batcher]  # variant -> its batch queue
    serving: ModelServing  # resolved once at load, not merged per request
    preprocessors: dict[str, TextPreprocessor] = field(default_factory=dict)
    variants: frozenset[str] = frozenset()  # the variants loaded here
    output_names: tuple[str, ...] = ()  # every output of the model, in the card's order

    def __post_init__(self) -> None:
        self.variants = frozenset(self.batchers)
        self.output_names = tuple(o.name for o in self.card.outputs)

    def work_item(self, variant: str, inputs: list[Tensor]) -> WorkItem | TextWorkItem:
        """What ``variant``'s runtime is handed for a request's inputs (text is tokenised here)."""
        pre = self.preprocessors.get(variant)
        if pre is not None:
            return TextWorkItem(pre.rows(inputs))
        arrays = {t.name: t.data for t in inputs}
        rows = inputs[0].shape[0] if inputs[0].shape else 1
        return WorkItem(arrays, rows, float(rows))


@dataclass
class ModelState:
    name: str
    state: str  # "READY" | "UNAVAILABLE"
    reason: str = ""
    versions: dict[str, LoadedVersion] = field(default_factory=dict)


class ModelHost:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: ModelsSettings,
        make_batcher: Callable[..., Batcher],
        make_text_batcher: Callable[..., Batcher] | None = None,
        hardware: str = "x86",
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.hardware = hardware
        self._make_batcher = make_batcher
        self._make_text_batcher = make_text_batcher
        self.models: dict[str, ModelState] = {}

    # -- load / unload -----------------------------------------------------------------------
    def load_startup(self) -> None:
        names = self.settings.load if self.settings.load is not None else self.registry.names()
        for name in names:
            if self.settings.serving(name).enabled:
                try:
                    self.load(name)
                except WattgateError as exc:
                    log.error("could not load %s: %s", name, exc)

    def load(self, name: str) -> ModelState:
        cards = [c for c in self.registry.versions(name) if c.stage != "retired"]
        if not cards:
            raise ModelNotFound(f"model {name!r} has no live version to load")
        serving = self.settings.serving(name)
        old = self.models.get(name)
        versions = {}
        try:
            for card in cards:
                versions[card.version] = self._load_version(card, serving)
        except WattgateError as exc:
            self.models[name] = ModelState(name, "UNAVAILABLE", str(exc), old.versions if old else {})
            raise
        self.models[name] = ModelState(name, "READY", "", versions)
        if old:
            self._close(old)
        log.info("loaded %s versions %s", name, sorted(versions))
        return self.models[name]

    def _load_version(self, card: ModelCard, serving) -> LoadedVersion:
        batchers, pre = {}, {}
        wanted = serving.variants or list(card.variants)
        for variant in wanted:
            _, vcard = card.variant(variant)
            path = self.registry.variant_path(card, variant)
            runtime = make_runtime(
                path,
                RuntimeOptions(self.hardware, serving.intra_op_threads, serving.inter_op_threads),
                vcard.precision,
            )
            text = card.preprocess is not None
            in_thread = vcard.size_bytes > _INLINE_MAX_BYTES or text
            workers = serving.max_concurrent_batches if text else 1  # a tensor batcher runs one batch at a time
            executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"run-{card.name}-{variant}") if in_thread else None
            if not text:
                batchers[variant] = self._make_batcher(
                    runtime=runtime,
                    max_batch_size=serving.max_batch_size,
                    batch_wait_timeout_s=serving.batch_wait_timeout_s,
                    executor=executor,
                )
                continue
            pre[variant] = TextPreprocessor(
                self.registry.support_path(card, card.preprocess.tokenizer_file),
                card.preprocess.max_length,
                [i.name for i in vcard.inputs],
            )
            size, pad = text_batching(vcard.energy_profile, self.hardware, serving)
            batchers[variant] = self._make_text_batcher(runtime, size, pad, executor, serving.max_concurrent_batches)
        return LoadedVersion(card, batchers, serving, pre)

    def unload(self, name: str) -> None:
        state = self.models.get(name)
        if state is None:
            self.registry.versions(name)  # 404 for a model the registry does not know
            return
        self.models[name] = ModelState(name, "UNAVAILABLE", "unloaded")
        self._close(state)

    @staticmethod
    def _close(state: ModelState) -> None:
        for v in state.versions.values():
            for b in v.batchers.values():
                b.close()

    # -- lookup ------------------------------------------------------------------------------
    def resolve(self, name: str, version: str | None) -> LoadedVersion:
        state = self.models.get(name)
        if state is None or state.state != "READY":
            if state is None:
                self.registry.versions(name)  # raises 404 for unknown names
            raise Unavailable(f"model {name!r} is not loaded; POST /v2/repository/models/{name}/load")
        if version is None:
            live = sorted((v.card for v in state.versions.values()), key=ModelCard.version_key)
            prod = [c for c in live if c.stage == "production"]
            version = (prod or live)[-1].version
        try:
            return state.versions[version]
        except KeyError:
            raise ModelNotFound(f"model {name!r} has no loaded version {version!r}") from None

    async def run(self, job: PoolJob) -> WorkResult:
        """The local pool: run a routed request on this process's batcher for its variant."""
        batcher = self.resolve(job.model, job.version).batchers.get(job.variant)
        if batcher is None:
            raise Unavailable(f"variant {job.variant!r} of {job.model!r} is not loaded on this gateway")
        return await batcher.infer(job.item)

    def close(self) -> None:
        for state in self.models.values():
            self._close(state)

    def index(self) -> list[dict]:
        out = []
        for name in self.registry.names():
            state = self.models.get(name)
            for card in self.registry.versions(name):
                loaded = state is not None and state.state == "READY" and card.version in state.versions
                reason = "" if loaded else (state.reason if state else "not loaded")
                if card.stage == "retired":
                    reason = "retired"
                out.append({"name": name, "version": card.version, "state": "READY" if loaded else "UNAVAILABLE", "reason": reason})
        return out
