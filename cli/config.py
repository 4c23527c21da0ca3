"""Helpers for the scripts' Hydra configs (only scripts see configs). Importing this module
registers the typed schemas (:mod:`latentplay.cli.schemas`) and does not import torch."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from latentplay.cli import schemas  # noqa: F401  (registers the configs' typed schemas)


class ConfigError(ValueError):
    """A config that cannot run as given; the message says which key and what to do."""


def require_complete(cfg: DictConfig) -> None:
    """Fail early, naming every mandatory value (``???``) that was not given."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        how = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(
            f"missing required config value(s): {', '.join(missing)}; give them on the command "
            f"line, e.g. {how}"
        )


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain Python values (interpolations resolved, choices as strings): what
    a script hands to the library, and what runs record of their configuration."""
    require_complete(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
