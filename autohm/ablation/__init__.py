"""`autohm ablate`: what each pillar and their combination contribute, measured around one
configuration (a 2^3 factorial over seeds, effects with bootstrap intervals, plots)."""

from autohm.ablation.factorial import FACTORS, factorial_effects
from autohm.ablation.report import write_report
from autohm.ablation.runner import Variant, ablate

__all__ = ["FACTORS", "Variant", "ablate", "factorial_effects", "write_report"]
