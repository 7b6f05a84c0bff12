"""Best-weights checkpoints as safetensors: plain tensors plus string metadata, never a pickle.

A checkpoint holds a model's ``state_dict`` (weights, biases, BN statistics) and a flat
``dict[str, str]`` of metadata (``fit`` stores the spec JSON, input shape, labels and epoch), so
it loads with nothing but ``safetensors`` and cannot execute code when read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from search_spaces.errors import FsnasError

CHECKPOINT_FILENAME = "best.safetensors"
"""The file ``fit`` writes inside ``TrainConfig.checkpoint_dir`` (one directory per trial)."""


class CheckpointError(FsnasError):
    """A checkpoint file is missing, unreadable or does not match the model."""


def state_to_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached, contiguous CPU copy of ``model.state_dict()`` (for best-epoch copies)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``state`` (and ``metadata``, JSON-encoded values) to ``path``; return the path.

    Parent directories are created. Metadata values that are not strings are stored as JSON.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    # safetensors refuses tensors that share storage; a copy per entry keeps each one separate
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(state_dict, metadata)`` read from a safetensors file (CPU tensors).

    Raises:
        CheckpointError: the file is missing or is not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a readable safetensors file ({exc})"
        ) from None
    return state, metadata


def load_weights(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load the weights at ``path`` into ``model`` (strictly); return the checkpoint metadata.

    Raises:
        CheckpointError: the file is unreadable or its tensors do not match the model's.
    """
    state, metadata = load_checkpoint(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: does not match the model ({exc})") from None
    return metadata
