"""`shipml tune --show STUDY`: the leaderboard, parameter importances and the best config of a study."""

from __future__ import annotations

from typing import Any

__all__ = ["leaderboard", "show_study"]


def leaderboard(study: Any, top: int = 20) -> list[dict[str, Any]]:
    """Trials best first (completed ones by value; then pruned, failed and running), with params and errors."""
    import optuna

    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3, "WAITING": 4}
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: (
        order.get(t.state.name, 5), sign * t.value if t.value is not None else 0.0, t.number))
    rows = []
    for t in trials[:top]:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "last_reported": t.intermediate_values.get(last) if last is not None else None,
                     "epochs": len(t.intermediate_values), "params": t.params, "seconds": seconds,
                     "error": t.user_attrs.get("error"), "run": t.user_attrs.get("run")})
    return rows


def importances(study: Any) -> dict[str, float]:
    """fANOVA importances over completed trials ({} with fewer than 2, or when optuna cannot compute them)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # e.g. one distinct value per parameter, or conditional spaces
        return {}


def show_study(study: Any) -> dict[str, Any]:
    return {"study": study.study_name, "metric": study.user_attrs.get("metric"),
            "direction": study.direction.name.lower(), "trials": leaderboard(study, top=1000),
            "importances": importances(study)}
