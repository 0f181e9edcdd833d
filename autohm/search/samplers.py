"""The samplers `--sampler` names, and any other Optuna sampler by `package.module:Factory`.

A factory takes (seed, budget) and returns an `optuna.samplers.BaseSampler`; every built-in
one honours the search's constraints. A user's factory, e.g. `optuna.samplers:QMCSampler` or
`mypackage.samplers:make`, is called with `seed=SEED` only and must return a BaseSampler: a
user can try a sampler without editing autohm.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import optuna

from autohm.errors import AutohmError

SamplerFactory = Callable[[int | None, int], optuna.samplers.BaseSampler]


def _nsga2(seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
    """A population of a quarter of the budget, 4 to 50."""
    population = max(4, min(50, budget // 4))
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)


SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": lambda seed, budget: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "nsga2": _nsga2,
    "gp": lambda seed, budget: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed, budget: optuna.samplers.RandomSampler(seed=seed),
}


def sampler_factory(spec: str) -> SamplerFactory:
    """The factory of a registered name or of `package.module:Factory` (AutohmError naming
    --sampler when neither)."""
    if spec in SAMPLERS:
        return SAMPLERS[spec]
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AutohmError(
            f"--sampler {spec!r} is not one of {', '.join(SAMPLERS)} or package.module:Factory"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        raise AutohmError(f"--sampler {spec!r}: cannot import {module_name}: {error}") from None
    except AttributeError:
        raise AutohmError(f"--sampler {spec!r}: {module_name} has no {attribute}") from None
    if not callable(factory):
        raise AutohmError(f"--sampler {spec!r}: {attribute} is not callable")
    return lambda seed, budget: factory(seed=seed)


def make_sampler(spec: str, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
    """The sampler `spec` names, seeded (see the module's docstring)."""
    try:
        sampler = sampler_factory(spec)(seed, budget)
    except TypeError as error:  # a user's factory that takes other arguments
        raise AutohmError(f"--sampler {spec!r}: {error}") from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise AutohmError(f"--sampler {spec!r} returned {type(sampler).__name__}, not an Optuna "
                          "sampler")  # fmt: skip
    return sampler
