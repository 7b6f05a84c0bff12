"""What an architecture is: ArchSpec (pure data), validation, build_model, SearchSpace, presets."""

from search_spaces.build import SpectrogramCNN, build_model, count_params
from search_spaces.errors import FsnasError, SpecError
from search_spaces.presets import PRESETS, Preset, get_preset, list_presets
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

__all__ = [
    "PRESETS",
    "SCHEMA_VERSION",
    "ArchSpec",
    "Branch",
    "ConvBlock",
    "Dense",
    "FsnasError",
    "Head",
    "LayerShape",
    "Preset",
    "SpecError",
    "SpectrogramCNN",
    "Trace",
    "build_model",
    "count_params",
    "get_preset",
    "list_presets",
    "resolve_height",
    "trace",
    "validate",
]
