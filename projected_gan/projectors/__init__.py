"""Projectors: frozen pretrained feature networks and fixed random projection heads.

Importing this package registers the built-in ``feature_networks`` (``tf_efficientnet_lite0``
... ``tf_efficientnet_lite4``, the ``timm/<model>`` family) and ``projection_heads``
(``none``, ``ccm``, ``ccm_csm``).
"""

from projected_gan.projectors.feature_networks import (
    RESIZE_RULES,
    WEIGHT_PACKAGES,
    FeatureNetwork,
    PretrainedWeightsError,
    TimmFeatureNetwork,
    create_timm_model,
    load_state_dict_file,
    timm_features,
)
from projected_gan.projectors.heads import CCM, CCMCSM, INITS, NoProjection, ProjectionHead
from projected_gan.projectors.projector import Projector

__all__ = [
    "CCM",
    "CCMCSM",
    "INITS",
    "RESIZE_RULES",
    "WEIGHT_PACKAGES",
    "FeatureNetwork",
    "NoProjection",
    "PretrainedWeightsError",
    "ProjectionHead",
    "Projector",
    "TimmFeatureNetwork",
    "create_timm_model",
    "load_state_dict_file",
    "timm_features",
]
