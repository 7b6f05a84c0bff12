"""nas.sampling: a model-based sampler's view of the study is bounded and read once per proposal."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas.sampling import DEFAULT_WINDOWS, BoundedHistorySampler, bounded
from nas.study import DUPLICATE_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tpe(seed: int = 0) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def _space(trial: optuna.Trial) -> tuple[float, float]:
    depth = trial.suggest_int("depth", 1, 3)
    width = sum(trial.suggest_categorical(f"w{i}", [1, 3, 5, 7]) for i in range(depth))
    return width / 21.0, float(depth * 10 + width)  # (maximise, minimise)


class Spy(optuna.samplers.BaseSampler):
    """Random proposals; records how many trials each proposal's study view held."""

    def __init__(self) -> None:
        self.random = optuna.samplers.RandomSampler(seed=0)
        self.seen: list[list[int]] = []

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        self.seen.append([t.number for t in study._get_trials(deepcopy=False, use_cache=True)])
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self.random.sample_independent(study, trial, name, dist)


def test_below_the_window_tpe_proposes_exactly_as_without_the_wrapper() -> None:
    plain = optuna.create_study(directions=["maximize", "minimize"], sampler=_tpe(3))
    wrapped = optuna.create_study(
        directions=["maximize", "minimize"], sampler=BoundedHistorySampler(_tpe(3), 1000)
    )
    plain.optimize(_space, n_trials=40)
    wrapped.optimize(_space, n_trials=40)
    assert [t.params for t in plain.trials] == [t.params for t in wrapped.trials]


def test_the_view_holds_the_window_the_front_and_the_running_only() -> None:
    spy = Spy()
    sampler = BoundedHistorySampler(spy, window=20)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    # trial 0 is the best on both objectives forever: the only front member, soon outside the
    # window of the 20 most recent finished trials
    study.enqueue_trial({"depth": 1, "w0": 7})
    for i in range(200):
        trial = study.ask()
        trial.suggest_int("depth", 1, 3)
        if i == 0:
            study.tell(trial, [10.0, 0.0])
        elif i % 7 == 3:
            study.tell(trial, None, state=TrialState.FAIL)
        elif i % 11 == 5:
            trial.set_user_attr(DUPLICATE_ATTR, 0)  # a repeat told its twin's outcome
            study.tell(trial, [10.0, 0.0])
        else:
            study.tell(trial, [0.0, 1.0 + i])
    last = spy.seen[-1]
    assert 0 in last  # the front, however old
    trials = study.get_trials(deepcopy=False)
    learned = [
        t.number
        for t in trials[:-1]  # the last proposal's view was built before it finished
        if t.state == TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs
    ]
    assert set(learned[-20:]) <= set(last)
    assert len(last) <= 20 + 1 + 1  # window + front + the proposal itself (RUNNING)
    earlier = [n for n in last if n != trials[-1].number]
    assert not any(DUPLICATE_ATTR in trials[n].user_attrs for n in earlier)
    assert not any(trials[n].state == TrialState.FAIL for n in earlier)
    assert max(len(v) for v in spy.seen) <= 22  # bounded at every proposal, not only the last


def test_an_infeasible_trial_is_never_kept_as_front() -> None:
    spy = Spy()
    sampler = BoundedHistorySampler(spy, window=5)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    trial = study.ask()
    trial.suggest_int("depth", 1, 3)
    trial.set_constraint("train_vram_mb", 3.0)  # violated
    study.tell(trial, [10.0, 0.0])
    for _ in range(20):
        trial = study.ask()
        trial.suggest_int("depth", 1, 3)
        study.tell(trial, [0.0, 5.0])
    assert 0 not in spy.seen[-1]


def test_tpe_and_gp_are_wrapped_with_their_windows_and_others_are_not() -> None:
    tpe = bounded(_tpe())
    assert isinstance(tpe, BoundedHistorySampler) and tpe.window == DEFAULT_WINDOWS["TPESampler"]
    nsga = optuna.samplers.NSGAIISampler(seed=0)
    assert bounded(nsga) is nsga
    random = optuna.samplers.RandomSampler(seed=0)
    assert bounded(random) is random
    with pytest.raises(ValueError, match="window"):
        BoundedHistorySampler(_tpe(), 0)


def test_a_long_tpe_study_models_a_bounded_number_of_trials() -> None:
    seen: list[int] = []

    class Counting(optuna.samplers.TPESampler):
        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            seen.append(len(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
            return super().sample_relative(study, trial, search_space)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        base = Counting(seed=0, multivariate=True, group=True, n_startup_trials=5)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=BoundedHistorySampler(base, 30)
    )
    study.optimize(_space, n_trials=120)
    front = len(study.best_trials)
    assert max(seen) <= 30 + front
    assert seen[-1] >= 30  # the window is full, not empty


def test_the_config_sets_the_window_and_zero_leaves_the_sampler_unbounded() -> None:
    from nas.config import ConfigError, from_dict
    from nas.study import make_sampler

    default = make_sampler(from_dict({"search": {"sampler": "tpe"}}))
    assert isinstance(default, BoundedHistorySampler)
    assert default.window == DEFAULT_WINDOWS["TPESampler"]
    chosen = make_sampler(from_dict({"search": {"sampler": "tpe", "model_window": 64}}))
    assert isinstance(chosen, BoundedHistorySampler) and chosen.window == 64
    unbounded = make_sampler(from_dict({"search": {"sampler": "tpe", "model_window": 0}}))
    assert isinstance(unbounded, optuna.samplers.TPESampler)
    assert isinstance(
        make_sampler(from_dict({"search": {"sampler": "nsga2"}})), optuna.samplers.NSGAIISampler
    )
    with pytest.raises(ConfigError, match=r"search\.model_window"):
        from_dict({"search": {"model_window": -1}})
