"""What an architecture is: ArchSpec (pure data), validation, build_model, SearchSpace, presets."""

from typing import TYPE_CHECKING, Any

from search_spaces.around import SpaceAround
from search_spaces.errors import FsnasError, SpecError
from search_spaces.presets import PRESETS, Preset, get_preset, list_presets
from search_spaces.receptive import BlockField, ReceptiveField, receptive_field
from search_spaces.space import ABLATION_FACTORS, SearchSpace, apply_factor, grid
from search_spaces.spec import (
    SCHEMA_VERSION,
    ArchSpec,
    Branch,
    ConvBlock,
    Dense,
    Head,
    resolve_height,
)
from search_spaces.validate import LayerShape, Trace, trace, validate

if TYPE_CHECKING:
    from search_spaces.build import SpectrogramCNN, build_model, count_params

_TORCH_NAMES = ("SpectrogramCNN", "build_model", "count_params")


def __getattr__(name: str) -> Any:
    # torch is imported only when a model is built, so specs, presets and the CLI start fast
    if name in _TORCH_NAMES:
        from search_spaces import build

        return getattr(build, name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")


__all__ = [
    "ABLATION_FACTORS",
    "PRESETS",
    "SCHEMA_VERSION",
    "ArchSpec",
    "BlockField",
    "Branch",
    "ConvBlock",
    "Dense",
    "FsnasError",
    "Head",
    "LayerShape",
    "Preset",
    "ReceptiveField",
    "SearchSpace",
    "SpaceAround",
    "SpecError",
    "SpectrogramCNN",
    "Trace",
    "apply_factor",
    "build_model",
    "count_params",
    "get_preset",
    "grid",
    "list_presets",
    "receptive_field",
    "resolve_height",
    "trace",
    "validate",
]
