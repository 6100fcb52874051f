"""Projectors: frozen pretrained feature networks and fixed random projection heads.

Importing this package registers the built-in ``feature_networks`` (``tf_efficientnet_lite0``
... ``tf_efficientnet_lite4``, the ``timm/<model>`` CNN family and the ``vit/<model>``
transformer family) and ``projection_heads`` (``none``, ``ccm``, ``ccm_csm``). timm itself is
imported only when a network is built.
"""

from projected_gan.projectors.feature_networks import (
    FEATURE_NETWORK_CONTRACT,
    RESIZE_RULES,
    FeatureNetwork,
    FeatureNetworkContractError,
    check_feature_network,
)
from projected_gan.projectors.heads import CCM, CCMCSM, INITS, NoProjection, ProjectionHead
from projected_gan.projectors.projector import Projector
from projected_gan.projectors.timm_cnn import TimmFeatureNetwork, timm_features
from projected_gan.projectors.timm_transformer import (
    TransformerFeatureNetwork,
    evenly_spaced_blocks,
    vit_features,
)
from projected_gan.projectors.weights import (
    WEIGHT_PACKAGES,
    PretrainedWeightsError,
    create_timm_model,
    load_state_dict_file,
)

__all__ = [
    "CCM",
    "CCMCSM",
    "FEATURE_NETWORK_CONTRACT",
    "INITS",
    "RESIZE_RULES",
    "WEIGHT_PACKAGES",
    "FeatureNetwork",
    "FeatureNetworkContractError",
    "NoProjection",
    "PretrainedWeightsError",
    "ProjectionHead",
    "Projector",
    "TimmFeatureNetwork",
    "TransformerFeatureNetwork",
    "check_feature_network",
    "create_timm_model",
    "evenly_spaced_blocks",
    "load_state_dict_file",
    "timm_features",
    "vit_features",
]
