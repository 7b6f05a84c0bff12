"""Pareto maths on plain numbers: non-dominated sort, hypervolume, knee point, selection rules.

Every function takes points as sequences of floats plus one direction per objective
(``"maximize"`` or ``"minimize"``) and works in a *minimisation* copy internally, so callers never
flip signs themselves. Only ``select`` and ``front_records`` know about ``TrialRecord``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from dashboards.records import Objective, TrialRecord, best_record
from search_spaces.errors import FsnasError

Point = Sequence[float]


class SelectionError(FsnasError, ValueError):
    """A selection rule is malformed or no trial satisfies it; the message names the rule."""


def _check(points: Sequence[Point], directions: Sequence[str]) -> list[tuple[float, ...]]:
    for d in directions:
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {d!r}")
    out: list[tuple[float, ...]] = []
    for i, p in enumerate(points):
        if len(p) != len(directions):
            raise ValueError(f"point {i} has {len(p)} values for {len(directions)} objectives")
        out.append(tuple(-float(v) if d == "maximize" else float(v) for v, d in zip(p, directions)))
    return out


def dominates(a: Point, b: Point, directions: Sequence[str]) -> bool:
    """Return True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    ma, mb = _check([a, b], directions)
    return all(x <= y for x, y in zip(ma, mb)) and any(x < y for x, y in zip(ma, mb))


def _dominates_min(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Point], directions: Sequence[str]) -> list[list[int]]:
    """Return the fronts as lists of point indices: front 0 is the Pareto front.

    Duplicated points share a front (neither dominates the other).
    """
    pts = _check(points, directions)
    n = len(pts)
    dominated_by_count = [0] * n
    dominates_list: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates_min(pts[i], pts[j]):
                dominates_list[i].append(j)
                dominated_by_count[j] += 1
            elif _dominates_min(pts[j], pts[i]):
                dominates_list[j].append(i)
                dominated_by_count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if dominated_by_count[i] == 0]
    while current:
        fronts.append(sorted(current))
        nxt: list[int] = []
        for i in current:
            for j in dominates_list[i]:
                dominated_by_count[j] -= 1
                if dominated_by_count[j] == 0:
                    nxt.append(j)
        current = nxt
    return fronts


def pareto_front(points: Sequence[Point], directions: Sequence[str]) -> list[int]:
    """Return the indices of the non-dominated points (empty for no points)."""
    fronts = non_dominated_sort(points, directions)
    return fronts[0] if fronts else []


def domination_count(point: Point, peers: Sequence[Point], directions: Sequence[str]) -> int:
    """Return how many of ``peers`` dominate ``point``."""
    return sum(1 for q in peers if dominates(q, point, directions))


# -- hypervolume ------------------------------------------------------------------------------
def hypervolume(points: Sequence[Point], directions: Sequence[str], reference: Point) -> float:
    """Return the exact hypervolume dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly beat the reference in every objective add nothing. Two
    objectives use a sweep; more use the WFG recursion (exact, fine for fronts of tens of points).
    """
    (ref,) = _check([reference], directions)
    pts = [p for p in _check(points, directions) if all(x < r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    return _wfg(_nondominated_min(pts), ref)


def _nondominated_min(pts: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    unique = sorted(set(pts))
    return [p for p in unique if not any(_dominates_min(q, p) for q in unique)]


def _hv2d(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    volume = 0.0
    best_y = ref[1]
    for x, y in sorted(pts):
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return volume


def _wfg(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        return _hv2d(pts, ref)
    # WFG: sum of exclusive contributions, each = inclusive box minus what later points cover.
    ordered = sorted(pts, key=lambda p: p[0], reverse=True)
    total = 0.0
    for k, p in enumerate(ordered):
        inclusive = math.prod(r - x for x, r in zip(p, ref))
        limited = [tuple(max(a, b) for a, b in zip(q, p)) for q in ordered[k + 1 :]]
        total += inclusive - _wfg(_nondominated_min(limited), ref)
    return total


def default_reference(points: Sequence[Point], directions: Sequence[str]) -> list[float]:
    """Return a stated reference point: 0 for maximised metrics, 1.1 × worst for minimised costs.

    Validation metrics (accuracy, ROC-AUC) are never below 0, so 0 bounds every maximised
    objective; a minimised cost is bounded by 10 % beyond the worst value seen, so the worst
    trial still contributes a sliver of volume.
    """
    ref: list[float] = []
    for k, d in enumerate(directions):
        if d == "maximize":
            ref.append(min([0.0, *(float(p[k]) for p in points)]))
        else:
            worst = max((float(p[k]) for p in points), default=1.0)
            ref.append(worst * 1.1 if worst > 0 else worst + 1.0)
    return ref


# A minimised cost with no bound known at the start is bounded by this multiple of the first
# complete trial's value (the warm start runs first): fixed once, so the hypervolume never falls.
FIRST_TRIAL_REFERENCE_FACTOR = 4.0


def study_reference(
    objectives: Sequence[Objective],
    bounds: dict[str, float],
    first: TrialRecord | None = None,
) -> tuple[dict[str, float], dict[str, str]] | None:
    """Return (the study's fixed reference point, where each coordinate came from), or None.

    A maximised metric is bounded by 0 (accuracy, ROC-AUC are never below); a minimised cost
    by ``bounds`` (the config's ``search.max_train_vram_mb`` for ``train_vram_mb``) when given,
    else by ``FIRST_TRIAL_REFERENCE_FACTOR`` × its value in ``first``, the first complete
    trial. None while a coordinate needs ``first`` and there is none yet. Once fixed, the
    reference never moves: a later trial beyond it adds no volume, and the hypervolume of a
    growing study can only rise.
    """
    ref: dict[str, float] = {}
    source: dict[str, str] = {}
    for o in objectives:
        if o.name in bounds:
            ref[o.name], source[o.name] = float(bounds[o.name]), "bound"
        elif o.direction == "maximize":
            ref[o.name], source[o.name] = 0.0, "metric floor"
        else:
            value = first.objectives.get(o.name) if first is not None else None
            if value is None or not math.isfinite(float(value)):
                return None
            v = float(value)
            ref[o.name] = v * FIRST_TRIAL_REFERENCE_FACTOR if v > 0 else v + 1.0
            source[o.name] = f"{FIRST_TRIAL_REFERENCE_FACTOR:g} × trial {first.number}"  # type: ignore[union-attr]
    return ref, source


# -- knee -------------------------------------------------------------------------------------
def knee_point(points: Sequence[Point], directions: Sequence[str]) -> int | None:
    """Return the index of the knee of the front of ``points`` (None for no points).

    The knee is the front point farthest from the straight line between the two extremes of the
    front in the first two objectives, after scaling both to [0, 1] (the usual "elbow" rule).
    A front of one or two points returns its point with the best first objective.
    """
    if not points:
        return None
    front = pareto_front(points, directions)
    mins = _check([points[i] for i in front], directions)
    if len(front) <= 2 or len(directions) < 2:
        return front[min(range(len(front)), key=lambda k: (mins[k][0], mins[k][1:]))]
    xs = [p[0] for p in mins]
    ys = [p[1] for p in mins]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    x_span = x_hi - x_lo or 1.0
    y_span = y_hi - y_lo or 1.0
    norm = [((x - x_lo) / x_span, (y - y_lo) / y_span) for x, y in zip(xs, ys)]
    a = min(range(len(norm)), key=lambda k: (norm[k][0], norm[k][1]))
    b = min(range(len(norm)), key=lambda k: (norm[k][1], norm[k][0]))
    (ax, ay), (bx, by) = norm[a], norm[b]
    length = math.hypot(bx - ax, by - ay)
    if length == 0.0:
        return front[a]

    def distance(k: int) -> float:
        px, py = norm[k]
        # below the chord (towards the ideal point) counts; points above it are not knees
        return ((bx - ax) * (ay - py) - (ax - px) * (by - ay)) / length

    best = max(range(len(norm)), key=lambda k: (round(distance(k), 12), -norm[k][0]))
    return front[best]


# -- records ----------------------------------------------------------------------------------
def front_candidates(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[int]:
    """Return indices of records that may be on a front: complete, every objective finite.

    Pruned (stopped early by the scheduler), infeasible and failed trials never count: their
    values are partial or absent.
    """
    out = []
    for i, r in enumerate(records):
        if r.status != "complete":
            continue
        values = [r.objectives.get(o.name) for o in objectives]
        if all(v is not None and math.isfinite(float(v)) for v in values):
            out.append(i)
    return out


def _points(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[list[float]]:
    return [[float(r.objectives[o.name]) for o in objectives] for r in records]


def front_records(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[TrialRecord]:
    """Return the Pareto-optimal complete records, ordered by the first objective (best first)."""
    cands = [records[i] for i in front_candidates(records, objectives)]
    dirs = [o.direction for o in objectives]
    front = [cands[i] for i in pareto_front(_points(cands, objectives), dirs)]
    sign = -1.0 if dirs and dirs[0] == "maximize" else 1.0
    return sorted(front, key=lambda r: (sign * float(r.objectives[objectives[0].name]), r.number))


def records_hypervolume(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    reference: dict[str, float] | None = None,
) -> tuple[float, dict[str, float]]:
    """Return (hypervolume of the complete records, the reference point used, by objective)."""
    cands = [records[i] for i in front_candidates(records, objectives)]
    dirs = [o.direction for o in objectives]
    pts = _points(cands, objectives)
    if reference is None:
        ref_list = default_reference(pts, dirs)
    else:
        ref_list = [float(reference[o.name]) for o in objectives]
    ref = {o.name: v for o, v in zip(objectives, ref_list)}
    return hypervolume(pts, dirs, ref_list), ref


def knee_record(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> TrialRecord | None:
    """Return the knee of the complete records' front, or None when no trial completed."""
    cands = [records[i] for i in front_candidates(records, objectives)]
    k = knee_point(_points(cands, objectives), [o.direction for o in objectives])
    return None if k is None else cands[k]


class RunningFront:
    """The Pareto front, best record and hypervolume of records added one at a time.

    After any sequence of ``add`` calls, ``front``, ``best`` and ``hypervolume()`` equal
    ``front_records``, ``best_record`` and ``records_hypervolume`` over the records added so
    far, at O(front) per record instead of O(n) or more: a new candidate is either dominated
    by a front member or joins and evicts the members it dominates. The reference point is
    ``reference`` when given, else ``default_reference`` over every candidate so far, kept as
    running extremes; the hypervolume is recomputed only when the front or the reference changed.
    """

    def __init__(
        self, objectives: Sequence[Objective], reference: dict[str, float] | None = None
    ) -> None:
        self.objectives = list(objectives)
        self._dirs = [o.direction for o in self.objectives]
        self._fixed = None if reference is None else [float(reference[o.name]) for o in objectives]
        # front members in the order they were added, with their minimisation copies
        self._members: list[tuple[TrialRecord, tuple[float, ...]]] = []
        # per objective: the lowest maximised value (from 0) or the highest minimised one
        self._extremes: list[float | None] = [0.0 if d == "maximize" else None for d in self._dirs]
        self.best: TrialRecord | None = None
        self._hv: float | None = 0.0  # None: the front or the reference changed since

    def fix_reference(self, reference: dict[str, float]) -> None:
        """Fix the reference point from now on (a study's ``study_reference``, once known)."""
        self._fixed = [float(reference[o.name]) for o in self.objectives]
        self._hv = None

    @property
    def fixed(self) -> bool:
        """Return True when the reference point is fixed (it no longer follows the trials)."""
        return self._fixed is not None

    def add(self, record: TrialRecord) -> bool:
        """Add a finished record; return True when it joined the front (a candidate only)."""
        if not front_candidates([record], self.objectives):
            return False
        values = [float(record.objectives[o.name]) for o in self.objectives]
        for k, (v, d) in enumerate(zip(values, self._dirs)):
            worst = self._extremes[k]
            if worst is None or (v < worst if d == "maximize" else v > worst):
                self._extremes[k] = v
                if self._fixed is None:  # the default reference moved
                    self._hv = None
        self.best = best_record([r for r in (self.best, record) if r is not None], self.objectives)
        (point,) = _check([values], self._dirs)
        if any(_dominates_min(q, point) for _, q in self._members):
            return False
        self._members = [(r, q) for r, q in self._members if not _dominates_min(point, q)]
        self._members.append((record, point))
        self._hv = None
        return True

    @property
    def front(self) -> list[TrialRecord]:
        """Return the front as ``front_records`` orders it (best first objective first)."""
        sign = -1.0 if self._dirs and self._dirs[0] == "maximize" else 1.0
        name = self.objectives[0].name if self.objectives else ""
        return sorted(
            (r for r, _ in self._members),
            key=lambda r: (sign * float(r.objectives[name]), r.number),
        )

    @property
    def members(self) -> list[TrialRecord]:
        """Return the front members in the order they were added."""
        return [r for r, _ in self._members]

    def reference(self) -> dict[str, float]:
        """Return the reference point by objective (as ``records_hypervolume`` reports it)."""
        if self._fixed is not None:
            ref = self._fixed
        else:
            ref = []
            for worst, d in zip(self._extremes, self._dirs):
                if d == "maximize":
                    ref.append(0.0 if worst is None else worst)
                else:
                    w = 1.0 if worst is None else worst
                    ref.append(w * 1.1 if w > 0 else w + 1.0)
        return {o.name: v for o, v in zip(self.objectives, ref)}

    def hypervolume(self) -> float:
        """Return the hypervolume of the front against ``reference()`` (cached)."""
        if self._hv is None:
            ref = self.reference()
            pts = [[float(r.objectives[o.name]) for o in self.objectives] for r, _ in self._members]
            self._hv = hypervolume(pts, self._dirs, [ref[o.name] for o in self.objectives])
        return self._hv


_UNDER_VRAM = re.compile(r"^max-metric-under-vram=(\d+(?:\.\d*)?)$")
_TRIAL = re.compile(r"^trial=(\d+)$")
SELECTION_RULES = ("knee", "best", "max-metric-under-vram=MiB", "trial=N")


def select(
    records: Sequence[TrialRecord], rule: str, objectives: Sequence[Objective]
) -> TrialRecord:
    """Return the record a selection rule picks.

    Rules: ``knee`` (knee of the front), ``best`` (``dashboards.records.best_record``: best
    first objective among complete trials, ties to the lower VRAM, then the lower number),
    ``max-metric-under-vram=MiB`` (the same among those whose ``train_vram_mb`` <= that many
    MiB),
    ``trial=N`` (Optuna trial number N, any status).

    Raises:
        SelectionError: unknown rule, or no trial satisfies it.
    """
    rule = rule.strip()
    if match := _TRIAL.match(rule):
        number = int(match.group(1))
        for r in records:
            if r.number == number:
                return r
        raise SelectionError(f"selection rule {rule!r}: no trial number {number} in the study")
    cands = [records[i] for i in front_candidates(records, objectives)]
    if not cands:
        raise SelectionError(f"selection rule {rule!r}: the study has no complete trial")
    if rule == "knee":
        knee = knee_record(records, objectives)
        assert knee is not None  # cands is not empty
        return knee
    if rule == "best":
        best = best_record(cands, objectives)
        assert best is not None  # cands is not empty
        return best
    if match := _UNDER_VRAM.match(rule):
        budget_mb = float(match.group(1))
        under = [
            r
            for r in cands
            if (v := r.costs.get("train_vram_mb", r.objectives.get("train_vram_mb"))) is not None
            and float(v) <= budget_mb
        ]
        if not under:
            raise SelectionError(
                f"selection rule {rule!r}: no complete trial has train_vram_mb <= {budget_mb:g} MiB"
            )
        best = best_record(under, objectives)
        assert best is not None  # under is not empty
        return best
    raise SelectionError(f"unknown selection rule {rule!r}; use one of {list(SELECTION_RULES)}")


# -- early stopping -----------------------------------------------------------------------------
def rung_should_stop(
    point: Point,
    peers: Sequence[Point],
    directions: Sequence[str],
    reduction_factor: int,
    min_dominators: int,
) -> bool:
    """Return True when a trial at a rung should stop (MO-ASHA-like, never on one objective).

    ``point`` is the trial's (metric so far, costs) and ``peers`` those of the other trials that
    reached the same rung. The trial stops only when (a) at least ``min_dominators`` peers
    dominate it and (b) it is outside the best ``ceil(n / reduction_factor)`` of the rung, taking
    whole non-dominated fronts in order. A rung with fewer than ``reduction_factor`` trials
    stops nobody.
    """
    if len(peers) + 1 < reduction_factor:
        return False
    if domination_count(point, peers, directions) < min_dominators:
        return False
    everyone = [*peers, point]
    keep = math.ceil(len(everyone) / reduction_factor)
    kept: list[int] = []
    for front in non_dominated_sort(everyone, directions):
        if len(kept) >= keep:
            break
        kept.extend(front)
    return len(everyone) - 1 not in kept
