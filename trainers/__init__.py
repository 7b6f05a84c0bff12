"""Data, features, training, metrics and cost measurement (imports search_spaces only)."""
