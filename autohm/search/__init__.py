"""The search: search-space files -> Optuna study (objectives, constraints, multi-fidelity early
stops, budget, heartbeat), the Pareto front, its hypervolume, and the pick rules of export.

Modules are imported where used (`from autohm.search.space import load_space`): this package
itself imports nothing, so results.py and the app can use the pure parts without Optuna's
samplers or the training stack."""
