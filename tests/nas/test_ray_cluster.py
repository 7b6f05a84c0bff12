"""Trials spread over a two-node Ray cluster with fake GPUs, each with the requested share."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

from nas.config import from_dict
from nas.search import run_search
from nas.study import weights_folder
from tests.nas._study import tiny_config


@pytest.mark.slow
def test_trials_run_on_both_nodes_with_half_a_gpu(tmp_path: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    node_ids = {node.node_id for node in cluster.list_all_nodes()}
    assert len(node_ids) == 2
    try:
        config = from_dict(
            tiny_config(
                tmp_path,
                study="cluster",
                train={"epochs": 1},
                search={
                    "trials": 4,
                    "early_stopping": {"enabled": False},
                    "keep_weights": "all",
                },
                # joins the running cluster like `fsnas search --address HOST:PORT`
                resources={
                    "address": cluster.address,
                    "gpus_per_trial": "0.5",
                    "max_concurrent": 2,
                },
            )
        )
        outcome = run_search(config)
        assert not ray.is_initialized()  # the search disconnects from the cluster it joined
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(outcome.records) == 4
    study = optuna.load_study(study_name="cluster", storage=config.storage)
    used = {t.user_attrs["ray_node_id"] for t in study.trials}
    shares = {t.user_attrs["gpu_share"] for t in study.trials}
    assert used == node_ids  # both simulated nodes ran trials
    assert shares == {0.5}  # each trial held half a (fake) GPU
    # every complete trial's weights reached the driver's folder, whichever node trained it
    complete = [r for r in outcome.records if r.status == "complete"]
    assert complete
    folder = weights_folder(config)
    for record in complete:
        assert record.costs["checkpoint"] == str(folder / f"trial-{record.number:05d}.safetensors")
        assert Path(record.costs["checkpoint"]).is_file()
    assert len(list(folder.iterdir())) == len(complete)
