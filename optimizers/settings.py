"""Typed settings of the optimizers: where runs go, how they are metered, and what each pipeline trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BATCH_SIZES = (1, 8, 32, 64)


class ProfileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_sizes: tuple[int, ...] = BATCH_SIZES
    # Each batch size runs until both floors are met, so tiny models are not timed on a handful of calls.
    min_calls: int = Field(5, ge=1)
    min_time_s: float = Field(0.5, gt=0)
    warmup_calls: int = Field(2, ge=0)
    threads: int = Field(1, ge=1, le=256)
    # Energy profile (energy/coefficients.py) that the measured host is modelled as.
    host_profile: str = "aws-x86"
    # Hardware classes that cannot be measured here get modelled entries from these profiles.
    modelled_profiles: dict[str, str] = Field(default_factory=lambda: {"arm": "aws-graviton2", "gpu": "nvidia-a10g"})

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(b < 1 for b in v):
            raise ValueError("batch_sizes must be positive and non-empty")
        return tuple(sorted(set(v)))


class DigitsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: int = Field(5, ge=1, le=50)
    student_hidden: tuple[int, ...] = (64,)
    teacher_hidden: tuple[int, ...] = (128, 64)
    epochs: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    # Early stopping: epochs without a better validation accuracy before training stops.
    patience: int = Field(100, ge=1)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)
    # Mixup strength (Beta(m, m)) for the KD student: the teacher labels the mixed inputs.
    mixup: float = Field(0.4, ge=0)
    # Fraction of hidden units structured pruning keeps, before fine-tuning.
    prune_keep: float = Field(0.5, gt=0, le=1)
    search_widths: tuple[int, ...] = (16, 32, 64, 128)
    search_depths: tuple[int, ...] = (1, 2)


class StudentSpec(BaseModel):
    """One distilled MiniLM student: the teacher layers it keeps and, optionally, its feed-forward width."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: tuple[int, ...]
    ffn: int | None = Field(None, ge=16, le=1536)
    # How the student starts before distillation: the teacher's weights as they are (units chosen
    # by weight norm), or ``reconstruct``: units chosen by their activations on training text and
    # each layer's output projections refitted by least squares to the teacher's (minilm_model.reconstruct).
    init: Literal["teacher", "reconstruct"] = "teacher"

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 0 <= i <= 5 for i in v):
            raise ValueError("students need a non-empty list of teacher layers in 0..5")
        return v

    @property
    def name(self) -> str:
        return (f"student-l{len(self.layers)}" + (f"-f{self.ffn}" if self.ffn is not None else "")
                + ("-recon" if self.init == "reconstruct" else ""))

    def shape(self) -> dict:
        """``{"layers": [...]}``, plus ``"ffn"`` and ``"init"`` only when not the default: a depth-only
        student keeps the step-cache key and report entry it had before width students existed."""
        return {"layers": list(self.layers), **({"ffn": self.ffn} if self.ffn is not None else {}),
                **({"init": self.init} if self.init != "teacher" else {})}


class MinilmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Mixed-domain corpus (optimizers/pipelines/corpus.py): training sentences split evenly over the
    # training domains, and held-out sentences per domain (whole held-out domains included).
    train_sentences: int = Field(4800, ge=10)
    # Relative share of a training domain in those sentences (unnamed domains weigh 1), e.g.
    # ``{fortunes-train: 4}`` for more everyday English, every student's worst domain (README).
    train_domain_weights: dict[str, float] = Field(default_factory=dict)
    heldout_sentences: int = Field(200, ge=8)
    # Throughput is timed on this many held-out sentences (every domain alike), in this many rounds
    # that each pass every variant once; speed-ups are reported as the median and range of the rounds.
    bench_sentences: int = Field(320, ge=1)
    bench_rounds: int = Field(5, ge=1)
    max_length: int = Field(64, ge=8, le=512)
    # Sequence length the gateway tokenises to (card preprocess).
    served_max_length: int = Field(128, ge=8, le=512)
    # One student per entry: the teacher layers it keeps, in order (all-MiniLM-L6-v2 has layers 0-5),
    # as a list, or ``{layers: [...], ffn: N}`` to also keep only the N most important of each kept
    # layer's 1,536 feed-forward units (width; the FFN is two thirds of a layer's multiply-adds).
    # Registered as ``student-l<N>`` or ``student-l<N>-f<ffn>``. 4 layers + INT8 is fast enough for
    # 3x fp32, 5 layers + INT8 is not (README has the measured table).
    students: tuple[StudentSpec, ...] = (StudentSpec(layers=(0, 1, 3, 5)), StudentSpec(layers=(0, 1, 2, 3, 5)))
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-4, gt=0)
    # Weight of the per-token hidden-state term next to the sentence-embedding term.
    token_weight: float = Field(1.0, ge=0)
    # Training sentences that ``init: reconstruct`` students are fitted on (~25 tokens each).
    calibration_sentences: int = Field(2000, ge=16)
    bench_batch: int = Field(32, ge=1)

    @field_validator("train_domain_weights")
    @classmethod
    def _domain_weights(cls, v: dict[str, float]) -> dict[str, float]:
        from optimizers.pipelines.corpus import domain_shares

        try:
            domain_shares(v)
        except ValueError as exc:
            raise ValueError(f"train_domain_weights: {exc}") from None
        return v

    @field_validator("students", mode="before")
    @classmethod
    def _student_lists(cls, v: Any) -> Any:
        # A bare list of layers is the common case (and the settings before width search).
        if isinstance(v, (list, tuple)):
            return tuple(item if isinstance(item, (dict, StudentSpec)) else {"layers": item} for item in v)
        return v

    @field_validator("students")
    @classmethod
    def _students(cls, v: tuple[StudentSpec, ...]) -> tuple[StudentSpec, ...]:
        if not v:
            raise ValueError("students need at least one entry")
        if len({s.name for s in v}) != len(v):
            raise ValueError("students are named by depth, width and init (student-l<N>[-f<ffn>][-recon]): "
                             "give each a different number of layers, ffn width or init")
        return v


class OptimizersSettings(BaseModel):
    """Settings of ``wattgate optimize``: the config file's ``optimizers:`` section (``wattgate.config_file.load_section``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: Path = Path("model_repository")
    # Run outputs and the step cache (git-ignored).
    work_dir: Path = Path("var/optimize")
    # Torch threads: the machine is shared, and the 1-thread numbers are the ones we report.
    torch_threads: int = Field(1, ge=1, le=256)
    profile: ProfileSettings = ProfileSettings()
    digits: DigitsSettings = DigitsSettings()
    minilm: MinilmSettings = MinilmSettings()
