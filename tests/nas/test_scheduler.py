"""Pareto-aware early stopping: rung decisions, and stopped trials kept off the front."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest

from dashboards.records import Objective, TrialRecord
from nas import pareto
from nas.config import StudyConfig, from_dict
from nas.ray_backend import FsnasOptunaSearch, ParetoAshaScheduler
from nas.search import early_stopping_notice, summarise
from nas.study import NATIVE_CONSTRAINTS, STATUS_ATTR, load_records
from nas.trial import FINAL_KEY, RECORD_JSON_KEY
from nas.trial_ledger import TrialLedger

MAX_MIN = ["maximize", "minimize"]
OBJECTIVES = [Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize")]


def test_rung_never_stops_on_accuracy_alone() -> None:
    # far less accurate but cheaper than every peer: not dominated, so it continues
    peers = [[0.9, 500.0], [0.92, 400.0], [0.95, 600.0], [0.91, 450.0]]
    assert not pareto.rung_should_stop([0.3, 50.0], peers, MAX_MIN, 3, 2)


def test_rung_stops_a_trial_dominated_by_enough_peers() -> None:
    peers = [[0.9, 100.0], [0.92, 120.0], [0.95, 600.0], [0.91, 110.0]]
    assert pareto.rung_should_stop([0.5, 300.0], peers, MAX_MIN, 3, 2)
    # the same trial survives when fewer peers than min_dominators dominate it
    assert not pareto.rung_should_stop([0.5, 300.0], peers, MAX_MIN, 3, 5)
    # and a rung with fewer than reduction_factor trials stops nobody
    assert not pareto.rung_should_stop([0.5, 300.0], peers[:1], MAX_MIN, 3, 1)


def test_rung_keeps_the_best_fraction_by_rank() -> None:
    # dominated by 2 peers but in the best third by non-dominated rank (2nd front of 9 trials)
    peers = [[0.95, 100.0], [0.96, 90.0]] + [[0.1 * i, 1000.0 + i] for i in range(1, 7)]
    assert not pareto.rung_should_stop([0.9, 150.0], peers, MAX_MIN, 3, 2)


def _ledger(records: list[TrialRecord]) -> TrialLedger:
    return TrialLedger(records.append)


def _scheduler(objectives: list[Objective], ledger: TrialLedger) -> ParetoAshaScheduler:
    """Return a scheduler with rungs at epochs 1 and 3 (of 9), eta 3, two dominators."""
    return ParetoAshaScheduler(
        objectives=objectives,
        max_epochs=9,
        grace_epochs=1,
        reduction_factor=3,
        min_dominators=2,
        ledger=ledger,
    )


def test_scheduler_decisions_at_rungs() -> None:
    ledger = _ledger([])
    sched = _scheduler(OBJECTIVES, ledger)
    assert sched.rungs == [1, 3]
    for i, (acc, vram) in enumerate([(0.9, 100.0), (0.92, 120.0), (0.91, 110.0)]):
        report = {"epoch": 1, "val_accuracy": acc, "train_vram_mb": vram}
        assert sched.decide(f"t{i}", report) == "CONTINUE"
    # epochs between rungs and final reports are never judged
    bad = {"epoch": 2, "val_accuracy": 0.1, "train_vram_mb": 900.0}
    assert sched.decide("t9", bad) == "CONTINUE"
    assert sched.decide("t9", {**bad, "epoch": 1, FINAL_KEY: True}) == "CONTINUE"
    # metric without cost: never stopped on accuracy alone
    assert sched.decide("t8", {"epoch": 1, "val_accuracy": 0.1}) == "CONTINUE"
    # cheap but weak: not dominated, continues
    assert sched.decide("t4", {"epoch": 1, "val_accuracy": 0.2, "train_vram_mb": 10.0}) == (
        "CONTINUE"
    )
    # dominated by three peers: stopped, with the reason in the ledger
    assert sched.decide("t5", {"epoch": 1, "val_accuracy": 0.5, "train_vram_mb": 300.0}) == "STOP"
    assert "dominated on (val_accuracy, train_vram_mb) by 3 of 4" in ledger.pruned["t5"]


def test_scheduler_uses_every_cost_known_at_the_rung() -> None:
    # objectives accuracy x GFLOPs x latency: latency is only measured after training, so the
    # rung compares (accuracy, GFLOPs); a FLOPs-only study stops dominated trials too
    objectives = [
        Objective("val_accuracy", "maximize"),
        Objective("gflops", "minimize"),
        Objective("latency_ms", "minimize"),
    ]
    ledger = _ledger([])
    sched = _scheduler(objectives, ledger)
    for i, (acc, gflops) in enumerate([(0.9, 0.1), (0.92, 0.12), (0.91, 0.11)]):
        report = {"epoch": 1, "val_accuracy": acc, "gflops": gflops, "train_vram_mb": 1e6}
        assert sched.decide(f"t{i}", report) == "CONTINUE"
    cheap = {"epoch": 1, "val_accuracy": 0.2, "gflops": 0.01, "train_vram_mb": 1.0}
    assert sched.decide("t3", cheap) == "CONTINUE"
    # VRAM is no objective here: a tiny VRAM does not save a trial dominated on FLOPs
    dominated = {"epoch": 1, "val_accuracy": 0.5, "gflops": 0.3, "train_vram_mb": 1.0}
    assert sched.decide("t4", dominated) == "STOP"
    assert "dominated on (val_accuracy, gflops) by 3 of 4" in ledger.pruned["t4"]


def test_a_study_whose_costs_come_after_training_is_told_nothing_stops() -> None:
    config = from_dict({"study": "lat", "search": {"objectives": ["val_metric", "latency_ms"]}})
    objectives = config.objectives("single_label")
    notice = early_stopping_notice(config, objectives)
    assert notice is not None and "(latency_ms)" in notice and "gflops" in notice
    assert early_stopping_notice(StudyConfig(), StudyConfig().objectives("single_label")) is None
    off = from_dict(
        {
            "search": {
                "objectives": ["val_metric", "latency_ms"],
                "early_stopping": {"enabled": False},
            }
        }
    )
    assert early_stopping_notice(off, objectives) is None


def _final(acc: float, vram: float) -> dict[str, Any]:
    record = TrialRecord(
        number=-1,
        status="complete",
        objectives={"val_accuracy": acc, "train_vram_mb": vram},
        costs={"train_vram_mb": vram},
    )
    return {
        FINAL_KEY: True,
        STATUS_ATTR: "complete",
        "val_accuracy": acc,
        "train_vram_mb": vram,
        RECORD_JSON_KEY: json.dumps(record.to_dict()),
    }


@pytest.fixture
def searcher_and_records() -> tuple[FsnasOptunaSearch, list[TrialRecord], TrialLedger]:
    records: list[TrialRecord] = []
    ledger = _ledger(records)
    searcher = FsnasOptunaSearch(
        ledger=ledger,
        objective_names=["val_accuracy", "train_vram_mb"],
        space=lambda trial: {"x": trial.suggest_int("x", 0, 9)},
        metric=["val_accuracy", "train_vram_mb"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="sched-test",
    )
    return searcher, records, ledger


def test_early_stopped_low_cost_trial_never_reaches_the_front(
    searcher_and_records: tuple[FsnasOptunaSearch, list[TrialRecord], TrialLedger],
) -> None:
    searcher, records, ledger = searcher_and_records
    for tid in ("a", "b", "c"):
        searcher.suggest(tid)
    searcher.on_trial_complete("a", _final(0.90, 200.0))
    # "b" is stopped early by the scheduler: Ray hands the searcher its last epoch report,
    # whose (partial) values would dominate everything if told to Optuna as COMPLETE
    ledger.pruned["b"] = "stopped at epoch 1 by the Pareto-aware scheduler"
    searcher.on_trial_complete("b", {"epoch": 1, "val_accuracy": 0.99, "train_vram_mb": 5.0})
    searcher.on_trial_complete("c", None, error=True)

    assert [r.status for r in records] == ["complete", "pruned", "failed"]
    pruned = records[1]
    assert pruned.metrics == {"val_accuracy_at_stop": 0.99}
    assert pruned.objectives == {}
    assert "crashed worker" in records[2].reason

    study = searcher._ot_study
    assert study is not None
    states = [t.state for t in study.trials]
    assert states == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    ]
    assert [t.number for t in study.best_trials] == [0]
    stored = load_records(study)
    assert [r.status for r in stored] == ["complete", "pruned", "failed"]
    _, front, hv, knee = summarise("sched-test", stored, OBJECTIVES, {})
    assert [r.number for r in front] == [0]
    assert knee is not None and knee.number == 0
    assert hv == pytest.approx(0.90 * 600.0)  # reference VRAM 4 x 200 of the first complete trial


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_constraint_reaches_the_sampler(sampler: str) -> None:
    from nas.config import load_config
    from nas.study import make_sampler

    config = load_config(None, {"search.sampler": sampler, "search.max_train_vram_mb": 200.0})
    records: list[TrialRecord] = []
    searcher = FsnasOptunaSearch(
        ledger=_ledger(records),
        objective_names=["val_accuracy", "train_vram_mb"],
        space=lambda trial: {"x": trial.suggest_int("x", 0, 9)},
        metric=["val_accuracy", "train_vram_mb"],
        mode=["max", "min"],
        sampler=make_sampler(config),
        study_name=f"constraint-{sampler}",
    )
    searcher.suggest("a")
    final = _final(0.9, 300.0)
    record = json.loads(final[RECORD_JSON_KEY])
    record["status"] = "infeasible"
    record["costs"]["fsnas_constraint"] = 100.0  # measured 300 MB against a 200 MB limit
    final[RECORD_JSON_KEY] = json.dumps(record)
    searcher.on_trial_complete("a", final)
    study = searcher._ot_study
    assert study is not None
    trial = study.trials[0]
    # COMPLETE with its measured values; the sampler's constraints_func read the violation
    # from the user attribute at tell time and stored it where its selection looks
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["fsnas_constraint"] == [100.0]
    if NATIVE_CONSTRAINTS:  # Optuna >= 5: Trial.set_constraint
        assert trial.system_attrs["constraints:train_vram_mb"] == 100.0
    else:  # Optuna 4: constraints_func, evaluated at tell
        assert list(trial.system_attrs["constraints"]) == [100.0]
    assert records[0].status == "infeasible"


def test_trial_resources_cpu_fixed_and_auto(tmp_path: Any) -> None:
    import numpy as np

    from nas.config import from_dict
    from nas.ray_backend import trial_resources
    from nas.study import SearchError
    from nas.trial import TrialSettings
    from search_spaces.spec import ArchSpec, Branch
    from trainers.featureset import FeatureConfig, FeatureSet, Split
    from trainers.result import TrainConfig

    split = Split(x=np.zeros((4, 1, 16, 21), "float32"), y=np.zeros(4, "int64"))
    data = FeatureSet(split, split, split, ["a", "b"], "single_label", FeatureConfig(n_mels=16))
    settings = TrialSettings(TrainConfig(batch_size=8), tuple(OBJECTIVES))

    def config(gpus: str, memory_mb: float | None = None) -> Any:
        return from_dict(
            {"resources": {"gpus_per_trial": gpus, "gpu_memory_mb": memory_mb, "cpus_per_trial": 2}}
        )

    # no GPU in the cluster: CPU-only, whatever "auto" would say
    assert trial_resources(config("auto"), data, settings, 0.0) == {"CPU": 2.0}
    with pytest.raises(SearchError, match="has no GPU"):
        trial_resources(config("0.5"), data, settings, 0.0)
    assert trial_resources(config("0.5"), data, settings, 2.0) == {"CPU": 2.0, "GPU": 0.5}
    # auto: a function of the sampled spec; a tiny model gets the smallest grid share
    auto = trial_resources(config("auto", 16_000.0), data, settings, 2.0)
    assert callable(auto)
    spec = ArchSpec(frontend=(Branch(height="0.9M", width=3, channels=4),))
    bundles = auto({"spec": spec.to_dict()}).bundles
    assert bundles == [{"CPU": 2.0, "GPU": 0.125}]
    # an unknown need (broken spec) takes a whole GPU rather than risk an OOM
    assert auto({"spec": {"bad": 1}}).bundles == [{"CPU": 2.0, "GPU": 1.0}]


def test_interrupted_trial_is_no_outcome(
    searcher_and_records: tuple[FsnasOptunaSearch, list[TrialRecord], TrialLedger],
) -> None:
    searcher, records, _ = searcher_and_records
    searcher.suggest("a")
    # stopped (Ctrl-C, search time budget) after an epoch report, without error or final report
    searcher.on_trial_complete("a", {"epoch": 1, "val_accuracy": 0.5, "train_vram_mb": 9.0})
    study = searcher._ot_study
    assert study is not None
    assert records == []
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert load_records(study) == []  # not counted: a resumed search asks again


def test_untrained_infeasible_trial_still_guides_the_sampler(
    searcher_and_records: tuple[FsnasOptunaSearch, list[TrialRecord], TrialLedger],
) -> None:
    searcher, records, _ = searcher_and_records
    searcher.suggest("a")
    record = TrialRecord(
        number=-1,
        status="infeasible",
        reason="estimated training VRAM 900 MB > --max-train-vram-mb 200; not trained",
        costs={"train_vram_mb": 900.0, "vram_source": "estimated", "fsnas_constraint": 700.0},
    )
    searcher.on_trial_complete(
        "a", {FINAL_KEY: True, RECORD_JSON_KEY: json.dumps(record.to_dict())}
    )
    study = searcher._ot_study
    assert study is not None
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values == [0.0, 900.0]  # worst metric, estimated cost: placeholders
    assert trial.user_attrs["fsnas_constraint"] == [700.0]
    assert records[0].status == "infeasible" and records[0].metrics == {}
    _, front, _, _ = summarise("s", load_records(study), OBJECTIVES, {})
    assert front == []


def _two_point_searcher(
    records: list[TrialRecord], storage: optuna.storages.BaseStorage
) -> FsnasOptunaSearch:
    """A searcher over a space of two designs (x = 0 or 1), so proposals repeat at once."""
    return FsnasOptunaSearch(
        ledger=_ledger(records),
        objective_names=["val_accuracy", "train_vram_mb"],
        space=lambda trial: {"x": trial.suggest_int("x", 0, 1)},
        metric=["val_accuracy", "train_vram_mb"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=storage,
        study_name="repeats",
    )


def test_repeated_designs_are_answered_from_their_twin_not_trained() -> None:
    from nas.study import DUPLICATE_ATTR, MAX_REDRAWS, count_repeats

    storage = optuna.storages.InMemoryStorage()
    records: list[TrialRecord] = []
    searcher = _two_point_searcher(records, storage)
    first = searcher.suggest("a")
    assert first is not None
    searcher.on_trial_complete("a", _final(0.9, 200.0))
    # every proposal equal to the finished design is told its outcome and re-asked
    second = searcher.suggest("b")
    assert second is not None and second["x"] != first["x"]
    study = searcher._ot_study
    assert study is not None
    repeats = [t for t in study.trials if DUPLICATE_ATTR in t.user_attrs]
    assert all(t.params == first and t.user_attrs[DUPLICATE_ATTR] == 0 for t in repeats)
    assert all(t.values == [0.9, 200.0] for t in repeats)  # the sampler learns the same
    assert searcher.repeats is not None and searcher.repeats.count == len(repeats)

    # both designs known ("b" still training): the search gives up after MAX_REDRAWS
    # proposals and trains the last one rather than spin
    third = searcher.suggest("c")
    assert third is not None
    repeats = [t for t in study.trials if DUPLICATE_ATTR in t.user_attrs]
    assert searcher.repeats.count == len(repeats) >= MAX_REDRAWS
    of_running = [t for t in repeats if t.params == second]
    assert of_running and all(t.state == optuna.trial.TrialState.FAIL for t in of_running)
    assert {t.user_attrs[DUPLICATE_ATTR] for t in of_running} == {"running trial b"}
    # repeats are not trials of the study's budget: no record, not on any front
    searcher.on_trial_complete("b", _final(0.8, 100.0))
    searcher.on_trial_complete("c", _final(0.85, 150.0))
    assert [r.status for r in load_records(study)] == ["complete"] * 3
    assert count_repeats(study) == len(repeats)

    # a resumed search knows the study's finished designs without having run them itself
    resumed = _two_point_searcher([], storage)
    assert resumed.suggest("d") is not None
    resumed_study = resumed._ot_study
    assert resumed_study is not None
    assert (
        resumed.repeats is not None and resumed.repeats.count == MAX_REDRAWS
    )  # both designs are finished: all repeats
    newest = [t for t in resumed_study.trials if DUPLICATE_ATTR in t.user_attrs][-MAX_REDRAWS:]
    for t in newest:
        twin = resumed_study.trials[t.user_attrs[DUPLICATE_ATTR]]
        assert DUPLICATE_ATTR not in twin.user_attrs  # a trained trial, with its record
        assert t.params == twin.params and t.values == twin.values
