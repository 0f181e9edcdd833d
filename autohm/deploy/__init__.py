"""The deployed model: compaction (masked channels and states physically removed, adapters merged)
and the files of a deployed model."""

from autohm.deploy.compact import LayerPlan, compact, describe, plan_layer

__all__ = ["LayerPlan", "compact", "describe", "plan_layer"]
