"""One torch training loop for every trainer here: LR schedule, early stopping, resumable checkpoints, AMP."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from optimizers.progress import epoch_bar

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" | "constant"
    warmup_epochs: int = 0
    # Stop when validation has not improved by min_delta for this many epochs; None trains all epochs.
    patience: int | None = 30
    min_delta: float = 0.0
    checkpoint_every: int = 10
    seed: int = 0
    amp: str = "auto"  # "auto": fp16 autocast + GradScaler when CUDA is present; "off"
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown LR schedule {self.schedule!r}; known: cosine, constant")
        if self.amp not in ("auto", "off"):
            raise ValueError(f"amp must be 'auto' or 'off', got {self.amp!r}")
        if self.epochs < 1 or self.checkpoint_every < 1:
            raise ValueError("epochs and checkpoint_every must be >= 1")


@dataclass(frozen=True)
class TrainReport:
    epochs_run: int
    best_epoch: int
    best_val: float
    stopped_early: bool
    resumed_from_epoch: int | None
    device: str
    amp: bool
    val_history: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["val_history"] = [round(v, 5) for v in self.val_history]
        return d


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Multiplier of the base LR for ``epoch`` (0-based): linear warm-up, then cosine to zero or flat."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "constant":
        return 1.0
    span = max(1, config.epochs - config.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _fingerprint(config: TrainConfig, extra: dict[str, Any]) -> str:
    return json.dumps({"config": asdict(config), **extra}, sort_keys=True, default=str)


def fit(
    model: torch.nn.Module,
    batches: Callable[[int, torch.Generator], Iterable[Any]],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    validate: Callable[[torch.nn.Module], float],
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> TrainReport:
    """Train ``model`` in place and leave it holding its best-validation weights (higher is better).

    ``batches(epoch, generator)`` yields one epoch's batches on the CPU; ``loss_fn(model, batch)``
    returns a scalar. A checkpoint whose fingerprint matches (config + ``fingerprint``) resumes.
    """
    use_cuda = torch.cuda.is_available() and config.amp == "auto"
    device = torch.device("cuda" if use_cuda else "cpu")
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(config, e))
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    fp = _fingerprint(config, fingerprint or {})
    state = {"epoch": 0, "best_val": -math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [], "finished": False}
    best_weights = copy.deepcopy(model.state_dict())
    resumed_from = None

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.is_file():
        # CPU first: RNG states must stay CPU ByteTensors; load_state_dict moves the rest to the device.
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fp:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            best_weights = saved["best_weights"]
            state = saved["state"]
            resumed_from = state["epoch"]

    def save() -> None:
        if ckpt_path is None:
            return
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "fingerprint": fp,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "best_weights": best_weights,
                "state": state,
            },
            tmp,
        )
        os.replace(tmp, ckpt_path)

    bar = epoch_bar(config.epochs, state["epoch"])  # progress: a no-op unless `wattgate optimize` asked
    while not state["finished"] and state["epoch"] < config.epochs:
        model.train()
        loss_sum, n_batches = torch.zeros((), device=device), 0
        for batch in batches(state["epoch"], generator):
            batch = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_cuda):
                loss = loss_fn(model, batch)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss_sum, n_batches = loss_sum + loss.detach().float(), n_batches + 1  # no sync per batch
        scheduler.step()
        model.eval()
        with torch.no_grad():
            val = float(validate(model))
        state["history"].append(val)
        if val > state["best_val"] + config.min_delta:
            state.update(best_val=val, best_epoch=state["epoch"], bad_epochs=0)
            best_weights = copy.deepcopy(model.state_dict())
        else:
            state["bad_epochs"] += 1
        state["epoch"] += 1
        if config.patience is not None and state["bad_epochs"] >= config.patience:
            state["finished"] = True
        if state["finished"] or state["epoch"] % config.checkpoint_every == 0 or state["epoch"] == config.epochs:
            state["finished"] = state["finished"] or state["epoch"] == config.epochs
            save()
        bar.update(state["epoch"], float(loss_sum) / max(1, n_batches), val)
    bar.close()

    model.load_state_dict(best_weights)
    model.to("cpu").eval()
    return TrainReport(
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val=state["best_val"],
        stopped_early=state["epoch"] < config.epochs,
        resumed_from_epoch=resumed_from,
        device=device.type,
        amp=use_cuda,
        val_history=tuple(state["history"]),
    )
