"""Search and ablation orchestration, Pareto analysis, export and the command line."""

__version__ = "0.1.0"
