"""Offline, silent wandb whose every folder lives under one root (no account, no network)."""

from __future__ import annotations

from pathlib import Path

FOLDERS = {
    "WANDB_DIR": "run",
    "WANDB_DATA_DIR": "data",
    "WANDB_CACHE_DIR": "cache",
    "WANDB_CONFIG_DIR": "config",
    "WANDB_ARTIFACT_DIR": "artifacts",
}


def offline_wandb_env(root: Path) -> dict[str, str]:
    """The environment variables for such a wandb, its folders made under ``root``."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}
    for var, sub in FOLDERS.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(root / sub)
    return env
