"""Typed schemas of every script's top-level config (Hydra structured configs).

The YAML files in ``configs/`` hold the values; these dataclasses hold the types. Each config
lists its schema first in its defaults (``- collect_schema``), so Hydra checks every value when
the command line is parsed, before any work starts, and names the key:
``episodes=ten`` -> "Value 'ten' of type 'str' could not be converted to Integer ...
full_key: episodes"; ``launcher=slurm`` -> "Invalid value 'slurm', expected one of [local,
ray]"; an unknown key -> "Key 'epsiodes' not in 'CollectConfig'". Groups that differ per choice
(``env``, ``policy``, ``model``, ``planner``) stay untyped here: what they build checks its own
arguments. Importing :mod:`latentplay.cli.config` (every script does, before ``@hydra.main``
runs) registers them (:func:`register`). Nothing here imports torch.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from latentplay.agents.train_sb3 import ALGOS
from latentplay.rollouts.format import SPLITS
from latentplay.rollouts.ray_launcher import RayOptions
from latentplay.world_models.settings import TrainerSettings


class _Choice(str, Enum):
    """A choice that reads as its value, also where an interpolation puts it in a string."""

    def __str__(self) -> str:
        return str(self.value)


def _choices(name: str, *values: str) -> type[Enum]:
    """A str enum whose member names are its values (OmegaConf matches enum *names*; the
    functional form also allows names such as ``global``)."""
    return _Choice(name, {v: v for v in values})


def _mutable_schema(cls: type, name: str) -> type:
    """A schema with the fields, types and defaults of the (frozen) dataclass ``cls``: the
    settings class stays the one place its keys are written."""
    hints = typing.get_type_hints(cls)
    return make_dataclass(
        name, [(f.name, hints[f.name], field(default=f.default)) for f in fields(cls)]
    )


Launcher = _choices("Launcher", "local", "ray")
StartMethod = _choices("StartMethod", "forkserver", "spawn")
Split = _choices("Split", *SPLITS)
# The views of agents.views.VIEWS (tests/test_configs.py checks they agree), and "auto".
ModelView = _choices("ModelView", "full", "ee_poke", "global")
CounterfactualView = _choices("CounterfactualView", "auto", "full", "ee_poke", "global")
CostSpace = _choices("CostSpace", "pixels", "state")
PlanCost = _choices("PlanCost", "goal", "push")
# agents.state_grounding.GROUNDINGS (tests/test_configs.py checks they agree)
GroundingKind = _choices("GroundingKind", "linear", "mlp", "rollout")
ActionSource = _choices("ActionSource", "latent", "grounded")
Answer = _choices("Answer", "auto", "abduction", "forward")
Imagination = _choices("Imagination", "auto", "compiled", "eager")
ExportFormat = _choices("ExportFormat", "minari")
ImportFormat = _choices("ImportFormat", "videos", "minari")
Crop = _choices("Crop", "center", "pad", "stretch")
Algo = _choices("Algo", *ALGOS)


@dataclass
class PreviewConfig:
    episodes: int = 16
    scale: int = 4
    format: str = "mp4"


@dataclass
class CollectConfig:
    env: Any = MISSING
    policy: Any = MISSING
    episodes: int = 200
    steps: int = 50
    workers: int = 2
    launcher: Launcher = Launcher["local"]
    seed: int = 0
    out: str = MISSING
    resume: bool = False
    shard_episodes: int = 25
    masks: bool = False
    start_method: StartMethod = StartMethod["forkserver"]
    progress: bool = True
    compression: str | None = "gzip"
    compression_level: int | None = 1
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    ray: RayOptions = field(default_factory=RayOptions)
    preview: PreviewConfig = field(default_factory=PreviewConfig)


TrainerConfig = _mutable_schema(TrainerSettings, "TrainerConfig")


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: str = MISSING
    out: str | None = None
    resume: Any = False  # true, false or auto: train() checks
    init: str | None = None
    split: Split = Split["train"]
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    data: str = MISSING
    out: str | None = None
    horizon: int = 8
    max_episodes: int | None = None
    max_clips: int | None = None
    device: str = "auto"
    video: bool = True


@dataclass
class GroundingConfig:
    kind: GroundingKind = GroundingKind["linear"]
    labels: list[int] = field(default_factory=lambda: [1000])
    file: str | None = None
    seed: int = 0
    steps: int = 2000


@dataclass
class PlanConfig:
    env: Any = MISSING
    planner: Any = MISSING
    checkpoint: str = MISSING
    data: str | None = None
    episodes: int = 50
    seed: int = 100000
    max_steps: int = 40
    execute: int = 1
    repeat: int = 1
    context: int = 1
    cost: PlanCost = PlanCost["goal"]
    behind_px: float = 5.0
    settle_px: float = 0.0
    model_view: ModelView = ModelView["global"]
    sample_steps: int | None = None
    space: CostSpace = CostSpace["pixels"]
    chunk: int | None = None
    imagination: Imagination = Imagination["auto"]
    calibrations_off: list[str] = field(default_factory=lambda: ["rest_px"])
    ensemble: list[str] = field(default_factory=list)
    ensemble_groundings: list[str] = field(default_factory=list)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    baselines: list[str] = field(default_factory=lambda: ["random", "oracle"])
    out: str | None = None
    device: str = "auto"
    progress: bool = True


@dataclass
class CounterfactualConfig:
    checkpoint: str = MISSING
    queries: Any = "all"  # all, or a list of query names and paths (files or folders)
    action_source: ActionSource = ActionSource["latent"]
    model_view: CounterfactualView = CounterfactualView["auto"]
    data: str | None = None
    labels: int = 1000
    grounding: GroundingKind = GroundingKind["linear"]
    grounding_file: str | None = None
    answer: Answer = Answer["auto"]
    out: str | None = None
    videos: int = 6
    plan_results: str | None = None
    include: list[str] = field(default_factory=list)
    sample_steps: int | None = None
    device: str = "auto"
    progress: bool = True


@dataclass
class PokeConfig:
    checkpoint: str = MISSING
    data: str | None = None
    out: str | None = None
    poke_queries: int = 30
    chain_queries: int = 20
    steps: int = 6
    seed: int = 1000
    image_clips: int = 48
    device: str = "auto"
    sample_steps: int | None = None
    solver: str | None = None
    reencode_every: int | None = None
    average: bool = True
    point: list[float] | None = None
    vector: list[float] | None = None
    then: int = 4


@dataclass
class ExportConfig:
    format: ExportFormat = ExportFormat["minari"]
    data: str = MISSING
    dataset_id: str = MISSING
    out: str | None = None
    split: Split | None = None
    include_state_obs: bool = False


@dataclass
class MergeConfig:
    sources: list[str] = MISSING
    out: str = MISSING
    progress: bool = True


@dataclass
class ImportConfig:
    format: ImportFormat = ImportFormat["videos"]
    source: str = MISSING
    out: str = MISSING
    size: int = 64
    crop: Crop = Crop["center"]
    every: int = 1
    episode_frames: int | None = None
    min_frames: int = 2
    seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    shard_items: int = 16
    minari_path: str | None = None
    pixels_key: str = "pixels"
    resume: bool = False
    progress: bool = True
    compression: str | None = "gzip"
    compression_level: int | None = 1
    preview: PreviewConfig = field(default_factory=PreviewConfig)


@dataclass
class TrainPolicyConfig:
    env: Any = MISSING
    algo: Algo = Algo["PPO"]
    timesteps: int = 200000
    n_envs: int = 2
    seed: int = 0
    device: str = "cpu"
    sb3_policy: str = "MlpPolicy"
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    start_method: StartMethod = StartMethod["forkserver"]
    progress: bool = True
    overwrite: bool = False
    out: str = MISSING


SCHEMAS = {
    "collect": CollectConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "plan": PlanConfig,
    "counterfactual": CounterfactualConfig,
    "poke": PokeConfig,
    "export": ExportConfig,
    "import": ImportConfig,
    "merge": MergeConfig,
    "train_policy": TrainPolicyConfig,
}


def register() -> None:
    """Store the schemas as ``<name>_schema`` for the configs' defaults lists (idempotent)."""
    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=node)


register()
