"""MLflow logging and plots of study results (imports search_spaces types only)."""
