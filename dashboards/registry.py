"""The MLflow Model Registry: an exported bundle becomes a registered model version.

This module owns ``register_model``, the only fsnas code that writes to the registry; the bundle
itself is written by ``nas.export``, which calls it (``nas.export.register_bundle``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path


def register_model(
    tracking_uri: str,
    bundle_dir: Path,
    *,
    name: str,
    experiment: str,
    alias: str,
    tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """Log the bundle as artifacts of an MLflow run and register it; return "name vN (alias A)".

    The run goes to the experiment ``experiment`` (created when missing), tagged
    ``fsnas.role=export`` and ``fsnas.study=<experiment>`` plus ``tags``, with the finite
    ``metrics``; the registered version's source is the run's ``bundle`` artifact folder and
    ``alias`` points at it. A run whose upload fails is marked FAILED.

    Raises:
        Exception: whatever MLflow raises, unchanged; the caller turns it into a warning.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = client.create_experiment(experiment) if found is None else found.experiment_id
    run_tags = {"fsnas.role": "export", "fsnas.study": experiment, **dict(tags or {})}
    run = client.create_run(str(experiment_id), run_name=f"export {name}", tags=run_tags)
    run_id = run.info.run_id
    try:
        for key, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                client.log_metric(run_id, key, float(value))
        client.log_artifacts(run_id, str(bundle_dir), artifact_path="bundle")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="fsnas exported spectrogram CNN")
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/bundle", run_id=run_id, tags=run_tags
    )
    client.set_registered_model_alias(name, alias, version.version)
    return f"{name} v{version.version} (alias {alias})"
