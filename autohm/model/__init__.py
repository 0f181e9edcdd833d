"""The Mamba v1 model: config, mixer, backbone, language model, classifier, checkpoint I/O."""

from autohm.model.backbone import MambaBackbone, RMSNorm
from autohm.model.classifier import MambaClassifier
from autohm.model.config import MambaConfig
from autohm.model.lm import MambaLM
from autohm.model.mixer import LayerState, MambaMixer

__all__ = [
    "LayerState",
    "MambaBackbone",
    "MambaClassifier",
    "MambaConfig",
    "MambaLM",
    "MambaMixer",
    "RMSNorm",
]
