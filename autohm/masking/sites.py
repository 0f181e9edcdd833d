"""Mask sites: which rows of which mixer projection a mask covers, and how they map onto the
d_inner channels (the axis a channel-granular mask and the scan order act on).

    site        weight rows                    channel axis of the slice
    in_proj.x   in_proj rows [0, d_inner)      rows      (row c feeds channel c's scan input)
    in_proj.z   in_proj rows [d_inner, 2 d)    rows      (row d + c gates channel c's output)
    x_proj.dt   x_proj rows [0, dt_rank)       columns   (column c reads channel c)
    x_proj.B    x_proj rows [dt_rank, +N)      columns
    x_proj.C    x_proj rows [dt_rank + N, +N)  columns
    dt_proj     all rows                       rows      (row c is channel c's step size)
    out_proj    all rows                       columns   (column c writes channel c's output)
    conv1d      all channels (the kernel K)    channels
"""

from __future__ import annotations

from dataclasses import dataclass

from autohm.model.mixer import MambaMixer

SITES = (
    "in_proj.x", "in_proj.z", "x_proj.dt", "x_proj.B", "x_proj.C", "dt_proj", "out_proj", "conv1d",
)  # fmt: skip
GRANULARITIES = ("element", "channel", "block")


@dataclass(frozen=True)
class Site:
    """A row slice [start, stop) of one projection's weight, with the slice's channel axis."""

    name: str
    module: str
    start: int
    stop: int
    channel_dim: int  # 0: slice rows are channels; 1: columns are channels


def site_layout(mixer: MambaMixer, name: str) -> Site:
    """Where site `name` lies in `mixer`'s weights."""
    d, rank, n = mixer.d_inner, mixer.dt_rank, mixer.d_state
    layout = {
        "in_proj.x": ("in_proj", 0, d, 0),
        "in_proj.z": ("in_proj", d, 2 * d, 0),
        "x_proj.dt": ("x_proj", 0, rank, 1),
        "x_proj.B": ("x_proj", rank, rank + n, 1),
        "x_proj.C": ("x_proj", rank + n, rank + 2 * n, 1),
        "dt_proj": ("dt_proj", 0, d, 0),
        "out_proj": ("out_proj", 0, mixer.out_proj.weight.shape[0], 1),
        "conv1d": ("conv1d", 0, d, 0),
    }
    if name not in layout:
        raise ValueError(f"unknown mask site {name!r}; choose from {', '.join(SITES)}")
    return Site(name, *layout[name])


def check_sites(sites: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The sites in canonical order, each named once; a clear error for unknown or no sites."""
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ValueError(f"unknown mask site(s) {unknown}; choose from {', '.join(SITES)}")
    if not sites:
        raise ValueError("no mask sites given")
    return tuple(s for s in SITES if s in sites)
