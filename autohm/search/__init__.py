"""The search: search-space files -> Optuna study (samplers, constraints, multi-fidelity early
stops, budget, heartbeat, workers). What reads a study (objectives, storage, selection, results,
export, the app) lives below it and never imports it.

Modules are imported where used (`from autohm.search.study import run_search`): this package
itself imports nothing."""
