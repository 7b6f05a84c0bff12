"""MLflow logging of ``fsnas confirm``: beside the study it confirms, linked to its parent run.

A ``ConfirmTracker`` is a ``StudyTracker`` whose runs live in the *study's* experiment: one
parent run per confirmation (tag ``fsnas.kind=confirm``, ``fsnas.confirm.of=<study>`` and
``fsnas.confirm.study_parent_run=<the study's parent run id>``), one child run per design ×
seed, named ``confirm · <design> · seed <s>`` and tagged ``fsnas.confirm=true``. A resumed
confirmation reuses its parent run and the children it already has (``StudyTracker``), so no
run is doubled. ``set_description`` writes a run's description (MLflow's note).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboards.records import TrialRecord
from dashboards.run_contents import TAG_ROLE, TAG_STUDY, run_tags
from dashboards.tracking import StudyTracker

TAG_CONFIRM = "fsnas.confirm"
TAG_CONFIRM_OF = "fsnas.confirm.of"
TAG_CONFIRM_STUDY_PARENT = "fsnas.confirm.study_parent_run"
DESCRIPTION_TAG = "mlflow.note.content"  # what MLflow shows as a run's description


class ConfirmTracker(StudyTracker):
    """Logs a confirmation of study ``of_study`` in that study's MLflow experiment."""

    def __init__(
        self, tracking_uri: str, name: str, of_study: str, config: Mapping[str, Any]
    ) -> None:
        super().__init__(tracking_uri, name, config, kind="confirm")
        self.of_study = of_study
        self.study_parent_run_id: str | None = None

    def _experiment_id(self) -> str:
        name, self.study_name = self.study_name, self.of_study
        try:
            experiment_id = super()._experiment_id()  # the study's experiment (made if missing)
        finally:
            self.study_name = name
        runs = self._client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{TAG_STUDY}` = '{_quote(self.of_study)}' and tags.`{TAG_ROLE}` = 'parent'"
            ),
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        self.study_parent_run_id = runs[0].info.run_id if runs else None
        return experiment_id

    def _parent_tags(self) -> dict[str, str]:
        tags = {**super()._parent_tags(), TAG_CONFIRM: "true", TAG_CONFIRM_OF: self.of_study}
        if self.study_parent_run_id:
            tags[TAG_CONFIRM_STUDY_PARENT] = self.study_parent_run_id
        return tags

    def log_trial(
        self,
        record: TrialRecord,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Log one design × seed as a child run named and tagged as a confirmation."""
        name = f"confirm · {run_name}" if run_name else None
        return super().log_trial(record, run_name=name, tags={**(tags or {}), TAG_CONFIRM: "true"})


def set_description(tracker: Any, text: str) -> bool:
    """Write ``text`` (Markdown) as the description of ``tracker``'s parent run; True if stored.

    Best effort, like every parent-run write: a store that fails is a warning, never an error.
    """
    client = getattr(tracker, "_client", None)
    run_id = getattr(tracker, "parent_run_id", None)
    if client is None or run_id is None:
        return False
    try:
        client.log_batch(run_id, tags=run_tags({DESCRIPTION_TAG: text}))
    except Exception:  # a description must never end a study
        return False
    return True


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


__all__ = [
    "DESCRIPTION_TAG",
    "TAG_CONFIRM",
    "TAG_CONFIRM_OF",
    "TAG_CONFIRM_STUDY_PARENT",
    "ConfirmTracker",
    "set_description",
]
