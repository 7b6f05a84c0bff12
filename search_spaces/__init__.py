"""What an architecture is: ArchSpec (pure data), validation, build_model, SearchSpace, presets."""

from search_spaces.build import SpectrogramCNN, build_model, count_params
from search_spaces.errors import FsnasError, SpecError
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
    "SCHEMA_VERSION",
    "ArchSpec",
    "Branch",
    "ConvBlock",
    "Dense",
    "FsnasError",
    "Head",
    "LayerShape",
    "SpecError",
    "SpectrogramCNN",
    "Trace",
    "build_model",
    "count_params",
    "resolve_height",
    "trace",
    "validate",
]
