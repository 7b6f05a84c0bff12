"""What drove a study: factor importance per objective, and the parent run's description.

Importance is Optuna's own (``optuna.importance.get_param_importances``), never a home-made
ANOVA. The evaluator is fANOVA (``FanovaImportanceEvaluator``, a random forest of the trials;
it works from two trials on and needs no direction) unless asked for PED-ANOVA
(``PedAnovaImportanceEvaluator``, Optuna 5's default, which compares the top 10 % of the trials
with the rest and needs about 20 trials for two in that top; it assumes lower is better, so a
maximised objective is negated). Only trials fsnas recorded as complete count: pruned,
infeasible and failed trials carry partial or placeholder values.

Conditional search dimensions (a block's kernel exists only when the depth reaches it) are
handled as Optuna does by default: importance is computed over the dimensions every counted
trial has (Optuna's ``intersection_search_space``); the dimensions left out are named in the
output, never silently imputed. Their effect shows through the dimension that switches them
on (``depth``, ``branches``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from dashboards.records import Objective
from nas.study import RECORD_ATTR, STATUS_ATTR

EVALUATORS = ("fanova", "ped-anova")
IMPORTANCE_SEED = 0  # fANOVA's forest: the same study gives the same table


@dataclass
class Importance:
    """The importance of each search dimension for one objective (sums to 1 when any)."""

    objective: str
    evaluator: str
    n_trials: int
    values: dict[str, float] = field(default_factory=dict)  # dimension -> importance, ranked
    left_out: list[str] = field(default_factory=list)  # conditional dimensions not assessed
    note: str = ""  # why nothing could be computed

    def ranked(self) -> list[str]:
        """Return the dimensions, most important first."""
        return sorted(self.values, key=lambda k: (-self.values[k], k))


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Return the trials fsnas recorded as complete with finite values (Optuna COMPLETE)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        status = t.user_attrs.get(STATUS_ATTR)
        if RECORD_ATTR in t.user_attrs and status not in (None, "complete"):
            continue  # an infeasible trial told with placeholder values, a pruned one
        if t.values and all(math.isfinite(v) for v in t.values):
            out.append(t)
    return out


def _evaluator(name: str) -> optuna.importance.BaseImportanceEvaluator:
    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    if name == "ped-anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown importance evaluator {name!r}; use one of {list(EVALUATORS)}")


def study_importance(
    study: optuna.Study, objectives: Sequence[Objective], evaluator: str = "fanova"
) -> list[Importance]:
    """Return one ``Importance`` per objective over the study's search dimensions.

    Fewer than two counted trials, or no dimension shared by all, gives empty values and a
    ``note`` saying why; an evaluator that refuses (too few trials for PED-ANOVA) likewise.
    """
    _evaluator(evaluator)  # an unknown name fails before any work
    trials = complete_trials(study)
    every = sorted({p for t in trials for p in t.params})
    out = []
    if len(trials) < 2:
        note = f"{len(trials)} complete trial(s): importance needs at least 2"
        return [Importance(o.name, evaluator, len(trials), note=note) for o in objectives]
    copy = optuna.create_study(directions=[o.direction for o in objectives])
    copy.add_trials(trials)
    shared = sorted(optuna.search_space.intersection_search_space(trials))
    left_out = [p for p in every if p not in shared]
    for k, o in enumerate(objectives):
        sign = -1.0 if evaluator == "ped-anova" and o.direction == "maximize" else 1.0

        def target(t: optuna.trial.FrozenTrial, k: int = k, sign: float = sign) -> float:
            return sign * t.values[k]

        item = Importance(o.name, evaluator, len(trials), left_out=left_out)
        if not shared:
            item.note = "no search dimension is shared by every complete trial"
        elif len({t.values[k] for t in trials}) < 2:
            item.note = f"every complete trial has the same {o.name}"
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # PED-ANOVA's "assumes minimisation" notice
                    values = optuna.importance.get_param_importances(
                        copy, evaluator=_evaluator(evaluator), params=shared, target=target
                    )
                item.values = {p: float(v) for p, v in values.items()}
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                item.note = f"{evaluator} could not rank the dimensions ({exc})"
        out.append(item)
    return out


def importance_table(items: Sequence[Importance], top: int = 12) -> str:
    """Return the terminal table: dimensions (rows, by the first objective) × objectives."""
    if not items:
        return "factor importance: no objective"
    first = items[0]
    name = "fANOVA" if first.evaluator == "fanova" else "PED-ANOVA"
    head = (
        f"factor importance per objective (Optuna {name}, {first.n_trials} complete trials; "
        "each column sums to 1):"
    )
    if not any(i.values for i in items):
        return "\n".join([head, *(f"  {i.objective}: {i.note}" for i in items)])
    order = next(i.ranked() for i in items if i.values)
    width = max(len("dimension"), *(len(p) for p in order))
    cols = [max(len(i.objective), 6) for i in items]
    lines = [
        head,
        "  "
        + "dimension".ljust(width)
        + "".join(f"  {i.objective:>{c}}" for i, c in zip(items, cols)),
    ]
    for p in order[:top]:
        cells = "".join(
            f"  {(f'{i.values[p]:.3f}' if p in i.values else '-'):>{c}}"
            for i, c in zip(items, cols)
        )
        lines.append("  " + p.ljust(width) + cells)
    if len(order) > top:
        lines.append(f"  … {len(order) - top} more dimension(s) in importance.json")
    for i in items:
        if i.note:
            lines.append(f"  {i.objective}: {i.note}")
    if first.left_out:
        lines.append(
            f"  {len(first.left_out)} conditional dimension(s) not assessed (not in every trial; "
            f"their effect shows through the dimension that enables them): "
            + ", ".join(first.left_out[:8])
            + (" …" if len(first.left_out) > 8 else "")
        )
    return "\n".join(lines)


def importance_dict(items: Sequence[Importance]) -> dict[str, Any]:
    """Return a JSON-ready form: per objective the ranked importances and notes."""
    return {
        i.objective: {
            "evaluator": i.evaluator,
            "n_trials": i.n_trials,
            "importance": {p: i.values[p] for p in i.ranked()},
            "conditional_left_out": list(i.left_out),
            "note": i.note,
        }
        for i in items
    }


def study_description(
    outcome: Any, front_text: str, importance: Sequence[Importance] = (), reference: str = ""
) -> str:
    """Return the Markdown description of a study's parent run: counts, front, hypervolume
    (and its reference), knee, the most important dimension per objective, where the plots are.
    ``outcome`` is a ``nas.search.SearchOutcome``; ``front_text`` its front table."""
    counts: dict[str, int] = {}
    for r in outcome.records:
        counts[r.status] = counts.get(r.status, 0) + 1
    knee = outcome.knee
    lines = [
        f"**{outcome.summary.study_name}**: {len(outcome.records)} trials ("
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"), {len(outcome.front)} on the Pareto front.",
        "",
        "```",
        front_text,
        "```",
        "",
        f"Hypervolume **{outcome.hypervolume:.6g}** (reference point, fixed for the study: "
        f"{reference or '-'}).",
        f"Knee: trial {knee.number} ({knee.spec_summary})." if knee is not None else "Knee: -",
    ]
    for i in importance:
        if i.values:
            top = i.ranked()[0]
            lines.append(f"Most important for {i.objective}: `{top}` ({i.values[top]:.2f}).")
    lines += [
        "",
        "Plots (Artifacts): `pareto.html` / `pareto.png` and `pareto_<y>_vs_<x>.*` (the front; "
        "pruned, failed and infeasible trials faded at their last values), `hypervolume.*`, "
        "`importance.html` / `importance.png`; data: `trials.csv`, `pareto.json`, "
        "`importance.json`.",
    ]
    return "\n".join(lines)


def write_importance(out_dir: Any, items: Sequence[Importance], study_name: str) -> list[Any]:
    """Write ``importance.json`` and the bar plots (HTML, PNG) into ``out_dir``; return paths."""
    import json
    from pathlib import Path

    from dashboards.importance_plots import write_importance_plots

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "importance.json"
    path.write_text(json.dumps(importance_dict(items), indent=2), encoding="utf-8")
    values = {i.objective: i.values for i in items}
    title = f"{study_name}: factor importance per objective (Optuna {items[0].evaluator})"
    return [path, *write_importance_plots(folder, values, title=title)] if items else [path]


def finish_parent_run(tracker: Any, study: optuna.Study, outcome: Any, front_text: str) -> None:
    """Attach the importance plots to a study's parent run and write its description.

    Best effort: any failure is one warning; the study and its other artifacts are unchanged.
    """
    import tempfile

    from dashboards.confirm_tracking import set_description

    try:
        items = study_importance(study, outcome.summary.objectives)
        with tempfile.TemporaryDirectory(prefix="fsnas-importance-") as tmp:
            tracker.log_artifacts(write_importance(tmp, items, outcome.summary.study_name))
        ref = ", ".join(f"{k}={v:.4g}" for k, v in outcome.summary.reference_point.items())
        set_description(tracker, study_description(outcome, front_text, items, ref))
    except Exception as exc:  # a summary must never end a finished search
        warnings.warn(
            f"study {outcome.summary.study_name!r}: could not add importance and the "
            f"description to the parent run ({type(exc).__name__}: {str(exc)[:200]})",
            RuntimeWarning,
            stacklevel=2,
        )


__all__ = [
    "EVALUATORS",
    "Importance",
    "complete_trials",
    "finish_parent_run",
    "importance_dict",
    "importance_table",
    "study_description",
    "study_importance",
    "write_importance",
]
