"""Helpers for the scripts' Hydra configs (only scripts see configs)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from latentplay.utils import schemas  # noqa: F401  (registers the configs' typed schemas)


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
