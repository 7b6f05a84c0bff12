"""Repeats of a known design are answered and redrawn at random: cheap, and never trained."""

from __future__ import annotations

import optuna

from dashboards.records import TrialRecord
from nas.study import MAX_REDRAWS, RECORD_ATTR, RepeatGuard, redraw_sampler


def _space(trial: optuna.Trial) -> tuple[int, int, int]:
    # 10 x 10 x 10 = 1000 designs; the objective rewards one corner, so TPE converges there
    return (
        trial.suggest_categorical("a", list(range(10))),
        trial.suggest_categorical("b", list(range(10))),
        trial.suggest_categorical("c", list(range(10))),
    )


def _search(n_trained: int, random_redraws: bool) -> tuple[int, int]:
    """Return (Optuna trials created, distinct designs trained) for ``n_trained`` trainings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=5, multivariate=True, group=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    guard = RepeatGuard(study)
    designs = set()
    for _ in range(n_trained):
        trial = study.ask()
        design = _space(trial)
        for _ in range(MAX_REDRAWS):
            if not guard.answer(trial):
                break
            if random_redraws:
                with redraw_sampler(study, trial.number):
                    trial = study.ask()
                    design = _space(trial)
            else:
                trial = study.ask()
                design = _space(trial)
        designs.add(design)
        value = -float(sum(design))
        trial.set_user_attr(RECORD_ATTR, TrialRecord(trial.number, "complete").to_dict())
        study.tell(trial, value)
        guard.finished(None, trial, optuna.trial.TrialState.COMPLETE, [value])
    return len(study.trials), len(designs)


def test_random_redraws_keep_the_study_near_the_trials_it_trains() -> None:
    trials, distinct = _search(150, random_redraws=True)
    assert distinct == 150  # a repeat is answered and redrawn, never trained
    assert trials <= 1.5 * 150, f"{trials} Optuna trials for 150 trainings"


def test_redraw_sampler_is_random_inside_and_restored_after() -> None:
    own = optuna.samplers.TPESampler(seed=1)
    study = optuna.create_study(sampler=own)
    with redraw_sampler(study, 7):
        assert isinstance(study.sampler, optuna.samplers.RandomSampler)
    assert study.sampler is own
    grid = optuna.samplers.GridSampler({"x": [0, 1]}, seed=0)
    grid_study = optuna.create_study(sampler=grid)
    with redraw_sampler(grid_study, 7):
        assert grid_study.sampler is grid  # a grid keeps its own order
