"""Which populations a run simulates, and how many keys each has."""

from __future__ import annotations

from dataclasses import dataclass

CASUAL = "casual"
POWER_USER = "power_user"
ENTERPRISE_BATCH = "enterprise_batch"
EVAL_HARNESS = "eval_harness"
NAT_NEIGHBOUR = "nat_neighbour"
BULK_SCRAPER = "bulk_scraper"
HYDRA = "hydra"
SLOW_EXTRACTOR = "slow_extractor"
HARVESTER = "harvester"
# Legitimate customers that look like attackers on several axes at once.
TUTOR_APP = "tutor_app"
RESEARCH_EVAL = "research_eval"
AGENT_PLATFORM = "agent_platform"
DATASET_BUILDER = "dataset_builder"
PROXY_USER = "proxy_user"  # ordinary people behind the rotating proxy pool key_churn uses
# Attackers who changed shape once detection existed.
MIMIC = "mimic"
PARAPHRASER = "paraphraser"
API_THINKING = "api_thinking"
KEY_CHURN = "key_churn"

BENIGN_POPULATIONS: tuple[str, ...] = (
    CASUAL,
    POWER_USER,
    ENTERPRISE_BATCH,
    EVAL_HARNESS,
    NAT_NEIGHBOUR,
    TUTOR_APP,
    RESEARCH_EVAL,
    AGENT_PLATFORM,
    DATASET_BUILDER,
    PROXY_USER,
)
ATTACK_POPULATIONS: tuple[str, ...] = (
    BULK_SCRAPER,
    HYDRA,
    SLOW_EXTRACTOR,
    HARVESTER,
    MIMIC,
    PARAPHRASER,
    API_THINKING,
    KEY_CHURN,
)
ALL_POPULATIONS: tuple[str, ...] = BENIGN_POPULATIONS + ATTACK_POPULATIONS

# Keys per population at scale=1.0. With the per-key rates of the populations, 30 minutes
# give about 240k events, about a third of them attacks.
_BASE_KEYS: dict[str, int] = {
    CASUAL: 5500,
    POWER_USER: 1100,
    ENTERPRISE_BATCH: 4,
    EVAL_HARNESS: 4,
    NAT_NEIGHBOUR: 160,
    BULK_SCRAPER: 2,
    HYDRA: 300,
    SLOW_EXTRACTOR: 5,
    HARVESTER: 6,
    TUTOR_APP: 3,
    RESEARCH_EVAL: 4,
    AGENT_PLATFORM: 8,
    DATASET_BUILDER: 2,
    PROXY_USER: 150,
    MIMIC: 40,
    PARAPHRASER: 60,
    API_THINKING: 30,
    KEY_CHURN: 400,
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Every run with the same config yields the same events."""

    duration_s: float = 1800.0
    start_ts: float = 1_790_000_000.0
    seed: int = 7
    # Multiplies the number of keys of every population (at least one key each);
    # per-key rates stay human or machine-like whatever the scale.
    scale: float = 1.0
    populations: tuple[str, ...] = ALL_POPULATIONS

    def __post_init__(self) -> None:
        unknown = set(self.populations) - set(ALL_POPULATIONS)
        if unknown:
            raise ValueError(f"unknown populations: {sorted(unknown)}")
        if self.duration_s <= 0 or self.scale <= 0:
            raise ValueError("duration_s and scale must be positive")
