"""Trial runs that no trial of the search will ever finish (the between-saves gap).

A trial started and lost between two of Tune's experiment-state saves (driver killed) is
unknown to the restored run, which continues under new trial ids. Its MLflow child run would
stay RUNNING forever; after the search, such a run is tagged ``w2s.orphan=true`` and KILLED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from w2s_ray.tracking.client import BufferedClient
from w2s_ray.tracking.search_run import ROLE_TRIAL

log = logging.getLogger(__name__)
ORPHAN_TAG = "w2s.orphan"


def mark_orphan_trials(client: BufferedClient, experiment_id: str, parent_run_id: str,
                       known_trial_ids: Iterable[str]) -> list[str]:
    """Tag and end every RUNNING child trial run of the parent whose trial id is not known; returns their run ids.

    Never raises: with the tracking server down nothing is marked (the next resume looks again).
    """
    known = set(known_trial_ids)
    flt = (f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`w2s.role` = '{ROLE_TRIAL}' "
           "and attributes.status = 'RUNNING'")
    try:
        with client.short_http():
            runs = client.mlflow.search_runs([str(experiment_id)], filter_string=flt, max_results=1000)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not look for orphan trial runs: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return []
    orphans = [r.info.run_id for r in runs if r.data.tags.get("w2s.trial_id") not in known]
    for run in orphans:
        client.set_tags(run, {ORPHAN_TAG: "true", "w2s.trial_status": "ORPHANED",
                              "w2s.orphan_reason": "trial lost before Tune saved it; the resumed search "
                                                   "continued under other trial ids"})
        client.set_status(run, "KILLED")
    return orphans
