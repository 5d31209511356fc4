"""The tuning room: hyperparameter search with Optuna over `tune.space`, each trial an ordinary run
(docs/scaling.md).

    space.py   tune.space parsed and checked against the config before any trial; sampled per trial
    study.py   run_study: the Optuna study (SQLite by default, PostgreSQL for many workers), pruning from the
               per-epoch validation metric, failed trials recorded, the winner scored on the test split once
    show.py    leaderboard and parameter importances (`shipml tune --show`)
"""

from shipml.tune.study import StudyResult, open_study, run_study, storage_url

__all__ = ["StudyResult", "open_study", "run_study", "storage_url"]
