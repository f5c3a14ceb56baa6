"""Hardware profiles: idle/max power and embodied carbon per unit, each row citing its source."""

from __future__ import annotations

from dataclasses import dataclass

from wattgate.errors import BadRequest

HARDWARE_CLASSES = ("x86", "arm", "gpu", "tpu")

SECONDS_PER_YEAR = 365.25 * 24 * 3600

# CCF "Embodied Emissions": expected lifespan EL = 4 years (Teads, from the Dell R740 full LCA).
DEFAULT_LIFETIME_S = 4 * SECONDS_PER_YEAR

# CCF methodology, "Memory": 0.392 W per GB (mean of Crucial ~0.375 and Micron ~0.408 W/GB).
MEMORY_POWER_W_PER_GB = 0.392

# CCF methodology, "Power Usage Effectiveness": AWS 1.135, GCP 1.1, Azure 1.185.
CCF_PUE = {"aws": 1.135, "gcp": 1.1, "azure": 1.185}

# CCF "Embodied Emissions" takes TE from Teads ("Building an AWS EC2 Carbon Emissions Dataset", sec. 5):
# 1,000 kgCO2e for a mono-socket, low-DRAM, no-local-storage rack server; +150 kgCO2e per GPU.
_TEADS_BASE_SERVER_KG = 1000.0
_TEADS_ADDITIONAL_GPU_KG = 150.0


@dataclass(frozen=True)
class HardwareProfile:
    """Power and embodied carbon of one *unit* (a vCPU, a GPU or a TPU chip) of a hardware type.

    ``idle_power_w`` is ``None`` where no source gives an idle figure; models that need it refuse
    such a profile rather than invent a number.
    """

    name: str
    hardware_class: str  # "x86" | "arm" | "gpu" | "tpu"
    unit: str  # "vcpu" | "gpu" | "chip"
    idle_power_w: float | None
    max_power_w: float
    embodied_kg_per_unit: float
    lifetime_s: float = DEFAULT_LIFETIME_S
    power_source: str = ""
    embodied_source: str = ""

    def __post_init__(self) -> None:
        if self.hardware_class not in HARDWARE_CLASSES:
            raise ValueError(f"hardware_class must be one of {HARDWARE_CLASSES}, got {self.hardware_class!r}")
        if self.max_power_w <= 0 or self.embodied_kg_per_unit < 0 or self.lifetime_s <= 0:
            raise ValueError(f"profile {self.name}: power, embodied carbon and lifetime must be positive")
        if self.idle_power_w is not None and not 0 <= self.idle_power_w <= self.max_power_w:
            raise ValueError(f"profile {self.name}: idle power must lie in [0, max]")

    @property
    def embodied_g_per_unit(self) -> float:
        return self.embodied_kg_per_unit * 1000.0

    @property
    def dynamic_power_w(self) -> float:
        """max − idle: the power one fully busy unit adds over idle (CCF's (max − min))."""
        if self.idle_power_w is None:
            raise BadRequest(f"hardware profile {self.name} has no sourced idle power")
        return self.max_power_w - self.idle_power_w


_CCF_MICROARCH = "CCF methodology, Appendix I/II (SPECpower-derived, per vCPU)"

PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in (
        # CCF Appendix I, AWS: average min 0.74 W / max 3.5 W per vCPU over AWS x86 microarchitectures.
        # Embodied: Teads base server 1,000 kgCO2e over the 96 vCPUs of the largest m5 (CCF's RR/TR
        # uses the largest instance in the family as total resources).
        HardwareProfile(
            "aws-x86", "x86", "vcpu", 0.74, 3.5, _TEADS_BASE_SERVER_KG / 96,
            power_source=_CCF_MICROARCH + ", AWS average",
            embodied_source="Teads/CCF 1,000 kgCO2e base server / 96 vCPUs (m5.24xlarge)",
        ),
        # CCF Appendix II, AWS Graviton2: 0.47 W min / 1.69 W max per vCPU.
        # Embodied: same Teads base server over the 64 vCPUs of the largest m6g.
        HardwareProfile(
            "aws-graviton2", "arm", "vcpu", 0.47, 1.69, _TEADS_BASE_SERVER_KG / 64,
            power_source=_CCF_MICROARCH + ", Graviton2",
            embodied_source="Teads/CCF 1,000 kgCO2e base server / 64 vCPUs (m6g.16xlarge)",
        ),
        # GPU idle/max watts: CCF AWS GPU coefficients (from Teads' EC2 dataset), as quoted in issue #3.
        # Embodied: Teads/CCF +150 kgCO2e per additional GPU (the card only; the host is not included).
        HardwareProfile(
            "nvidia-t4", "gpu", "gpu", 8.0, 71.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="CCF AWS GPU coefficients (Teads): T4 8 / 71 W",
            embodied_source="Teads/CCF +150 kgCO2e per GPU",
        ),
        HardwareProfile(
            "nvidia-a10g", "gpu", "gpu", 18.0, 153.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="CCF AWS GPU coefficients (Teads): A10G 18 / 153 W",
            embodied_source="Teads/CCF +150 kgCO2e per GPU",
        ),
        HardwareProfile(
            "nvidia-a100", "gpu", "gpu", 46.0, 407.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="CCF AWS GPU coefficients (Teads): A100 46 / 407 W",
            embodied_source="Teads/CCF +150 kgCO2e per GPU",
        ),
        # H100 SXM: 700 W TDP (NVIDIA H100 datasheet). No sourced idle figure: None, so nothing models
        # with an invented one. (Our H200 reading below is the same GH100 die, for whoever needs a proxy.)
        HardwareProfile(
            "nvidia-h100", "gpu", "gpu", None, 700.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="NVIDIA datasheet TDP 700 W; idle unsourced",
            embodied_source="Teads/CCF +150 kgCO2e per GPU (no H100-specific LCA used)",
        ),
        # H200 SXM: 700 W TDP (NVIDIA datasheet). Idle measured by us via NVML (python -m bench.device.nvml_check,
        # driver 580.159.04): 119 W with a CUDA context held, as a serving replica holds one (78 W with
        # none); an earlier reading of ours gave ~123 W.
        HardwareProfile(
            "nvidia-h200", "gpu", "gpu", 119.0, 700.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="NVIDIA datasheet TDP 700 W; idle 119 W (CUDA context held) measured by us via NVML",
            embodied_source="Teads/CCF +150 kgCO2e per GPU (no H200-specific LCA used)",
        ),
        # TPU v4: 192 W max per chip (Jouppi et al., "TPU v4", ISCA 2023, Table: max 192 W, mean 170 W).
        # No published idle figure. No TPU LCA is public: the 150 kg GPU figure is reused as a stand-in.
        HardwareProfile(
            "google-tpu-v4", "tpu", "chip", None, 192.0, _TEADS_ADDITIONAL_GPU_KG,
            power_source="Jouppi et al. ISCA 2023: TPU v4 max 192 W/chip; idle unpublished",
            embodied_source="ASSUMED: Teads/CCF per-GPU 150 kgCO2e reused; no TPU LCA published",
        ),
    )
}


def get_profile(name: str) -> HardwareProfile:
    """The named profile; unknown names fail loudly with the list of known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise BadRequest(f"unknown hardware profile {name!r}; known: {sorted(PROFILES)}") from None


def profiles_for_class(hardware_class: str) -> list[HardwareProfile]:
    if hardware_class not in HARDWARE_CLASSES:
        raise BadRequest(f"unknown hardware class {hardware_class!r}; known: {HARDWARE_CLASSES}")
    return [p for p in PROFILES.values() if p.hardware_class == hardware_class]

# The profile the router assumes for a hardware class when a pool names only its class.
DEFAULT_PROFILE_FOR_CLASS = {
    "x86": "aws-x86",
    "arm": "aws-graviton2",
    "gpu": "nvidia-a10g",
    "tpu": "google-tpu-v4",
}
