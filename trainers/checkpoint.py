"""Best-weights checkpoints as safetensors: plain tensors plus string metadata, never a pickle.

A checkpoint holds a model's ``state_dict`` (weights, biases, BN statistics) and a flat
``dict[str, str]`` of metadata (``fit`` stores the spec JSON, input shape, labels and epoch), so
it loads with nothing but ``safetensors`` and cannot execute code when read.

Every checkpoint records ``weights_sha256`` (``WEIGHTS_HASH_KEY``) in its metadata: the SHA-256
of its tensors (``tensors_sha256``: each tensor's name, dtype, shape and bytes, in name order;
a file's own metadata cannot hold a hash of the whole file). ``load_checkpoint`` recomputes it,
so one flipped bit in the tensors is caught, and refuses NaN or infinite values. A file written
before fsnas recorded the hash has none; it is still read (callers may warn).
"""

from __future__ import annotations

import hashlib
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


WEIGHTS_HASH_KEY = "weights_sha256"
"""Metadata key of the SHA-256 of a checkpoint's tensors (``tensors_sha256``)."""


class CheckpointError(FsnasError):
    """A checkpoint file is missing, unreadable, damaged or does not match the model."""


def tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Return the hex SHA-256 of tensors: name, dtype, shape and raw bytes of each, by name.

    Independent of how a file lays the tensors out, so the writer computes it before saving
    and a reader from what it loaded.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_problem(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str | None:
    """Return what is wrong with loaded weights, or None when they are intact and finite.

    Wrong: the recorded ``weights_sha256`` differs from the tensors' (the file was damaged or
    edited), or a floating-point tensor holds NaN or infinity. Weights without a recorded hash
    (written before fsnas kept one) are only checked for finiteness.
    """
    expected = metadata.get(WEIGHTS_HASH_KEY)
    if expected is not None:
        actual = tensors_sha256(state)
        if actual != expected:
            return (
                f"the tensors differ from those written (sha256 {actual[:12]}…, recorded "
                f"{str(expected)[:12]}…): the file is damaged or was edited"
            )
    for name in sorted(state):
        tensor = state[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            return (
                f"tensor {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}: "
                "these weights cannot give meaningful scores"
            )
    return None


def state_to_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached, contiguous CPU copy of ``model.state_dict()`` (for best-epoch copies)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``state`` (and ``metadata``, JSON-encoded values) to ``path``; return the path.

    Parent directories are created. Metadata values that are not strings are stored as JSON;
    ``weights_sha256`` (the tensors' hash) is added.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    # safetensors refuses tensors that share storage; a copy per entry keeps each one separate
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta[WEIGHTS_HASH_KEY] = tensors_sha256(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(state_dict, metadata)`` read from a safetensors file (CPU tensors).

    Raises:
        CheckpointError: the file is missing or is not a safetensors file, its tensors differ
            from their recorded hash, or hold NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a readable safetensors file ({exc})"
        ) from None
    problem = weights_problem(state, metadata)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {problem}")
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
