"""Bounded sampler work: a model-based sampler sees a window of the study, read once per proposal.

Optuna's TPE and GP samplers model every finished trial of the study at every proposal, so the
cost of a proposal grows with the study (TPE linearly, GP cubically), and each proposal starts
with a read of the storage. ``BoundedHistorySampler`` wraps such a sampler and hands it a view
of the study that holds

* the most recent ``window`` finished trials (COMPLETE or PRUNED, by trial number; the states
  TPE and GP learn from),
* every COMPLETE, feasible trial on the Pareto front of the whole study (so the best designs
  are never forgotten, however old), and
* the trials still RUNNING or WAITING (TPE's constant liar reads them),

and none of the proposals that only repeated a known design (``DUPLICATE_ATTR``: told their
twin's outcome, never trained; modelling them again would count one design several times and
pull the sampler back to it). The view is built once per proposal from the study's trial list
(one storage read), keeps its front incrementally, and is what every ``sample_*`` call of that
proposal reads. A study shorter than the window is modelled exactly as without the wrapper,
except for the repeats. Writes (``before_trial``, ``after_trial``: constraints, generation
attributes) go to the real study.

Limits (``DEFAULT_WINDOWS``; ``search.model_window`` sets another, 0 none): TPE models the last
500 finished trials plus the front (its cost per proposal is about linear in the trials it
models, once per group of parameters of a conditional space); GP the last 300 (its exact
Gaussian process fits in O(n³)). NSGA-II is not wrapped: it breeds from its
previous generation's population, so its work per proposal is already bounded by the population
size, apart from Optuna's own scan of the (cached) trial list.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

# finished trials a wrapped sampler models at most, by sampler class name
DEFAULT_WINDOWS: dict[str, int] = {"TPESampler": 500, "GPSampler": 300}
_LEARNED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_LIVE_STATES = (TrialState.RUNNING, TrialState.WAITING)
# the user attribute nas.study.RepeatGuard sets on a repeat (kept here: nas.study imports us)
_DUPLICATE_ATTR = "fsnas_duplicate_of"


class _StudyView:
    """A read-only stand-in for a ``Study`` whose trial list is a fixed, bounded selection."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study = study
        self._view_trials = trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._view_trials
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self._get_trials()


def _feasible(trial: FrozenTrial) -> bool:
    """Return False when a constraint is violated (``Trial.set_constraint`` stores each as
    ``constraints:<name>``; a ``constraints_func`` stores the list as ``constraints``)."""
    for key, value in trial.system_attrs.items():
        if key == "constraints" and any(float(c) > 0.0 for c in value):
            return False
        if key.startswith("constraints:") and float(value) > 0.0:
            return False
    return True


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """Return True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for x, y, s in zip(a, b, signs):
        if s * x < s * y:
            return False
        if s * x > s * y:
            better = True
    return better


class BoundedHistorySampler(optuna.samplers.BaseSampler):
    """Wrap ``base`` so that each proposal models at most ``window`` recent finished trials
    plus the study's Pareto front (see the module docstring)."""

    def __init__(self, base: optuna.samplers.BaseSampler, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        self.base = base
        self.window = window
        self._view: _StudyView | None = None
        self._view_for: tuple[int, int] | None = None  # (study id, trial number) it serves
        self._front: list[FrozenTrial] = []
        self._front_seen: set[int] = set()  # trial numbers already offered to the front

    def __getattr__(self, name: str) -> Any:  # e.g. the base sampler's documented attributes
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    # -- the view -------------------------------------------------------------------------------
    def view(self, study: optuna.Study, trial: FrozenTrial) -> _StudyView:
        """Return the bounded view of ``study`` for proposing ``trial`` (built once per trial)."""
        key = (study._study_id, trial.number)
        if self._view is None or self._view_for != key:
            self._view = _StudyView(study, self._select(study))
            self._view_for = key
        return self._view

    def _select(self, study: optuna.Study) -> list[FrozenTrial]:
        trials = study._get_trials(deepcopy=False, use_cache=True)
        learned = [
            t for t in trials if t.state in _LEARNED_STATES and _DUPLICATE_ATTR not in t.user_attrs
        ]
        self._update_front(study, learned)
        recent = learned[-self.window :]
        chosen = {t.number: t for t in recent}
        for t in self._front:
            chosen.setdefault(t.number, t)
        for t in trials:
            if t.state in _LIVE_STATES:
                chosen.setdefault(t.number, t)
        return [chosen[n] for n in sorted(chosen)]

    def _update_front(self, study: optuna.Study, learned: list[FrozenTrial]) -> None:
        signs = [
            1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions
        ]
        for t in learned:
            if t.number in self._front_seen:
                continue
            self._front_seen.add(t.number)
            if t.state != TrialState.COMPLETE or t.values is None or not _feasible(t):
                continue
            values = t.values
            if any(
                _dominates(f.values, values, signs) or list(f.values) == list(values)
                for f in self._front
            ):
                continue
            self._front = [f for f in self._front if not _dominates(values, f.values, signs)]
            self._front.append(t)

    # -- the sampler interface: reads go to the view, writes to the study ------------------------
    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(self.view(study, trial), trial)  # type: ignore[arg-type]

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        return self.base.sample_relative(self.view(study, trial), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.base.sample_independent(
            self.view(study, trial),  # type: ignore[arg-type]
            trial,
            param_name,
            param_distribution,
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._view = None  # a new proposal reads the study again
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base.after_trial(study, trial, state, values)


def bounded(
    sampler: optuna.samplers.BaseSampler, window: int | None = None
) -> optuna.samplers.BaseSampler:
    """Return ``sampler`` wrapped in ``BoundedHistorySampler`` when it models the whole study
    (TPE, GP); any other sampler unchanged.

    ``window``: the finished trials it models at most (``search.model_window``); None takes
    ``DEFAULT_WINDOWS``, 0 leaves the sampler unbounded (every trial, repeats included).
    """
    default = DEFAULT_WINDOWS.get(type(sampler).__name__)
    if default is None or window == 0:
        return sampler
    return BoundedHistorySampler(sampler, default if window is None else window)
