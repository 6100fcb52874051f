"""Metrics for generators: ``fid``, ``kid`` and ``pr`` in the standard Inception space, ``fd``
(and ``kid``/``pr`` on request) in any feature network's space.

    >>> from projected_gan.metrics import evaluate, evaluate_folders
    >>> evaluate(lambda n, c: G_ema(torch.randn(n, 256, device="cuda"), c), dataset,
    ...          metrics=("fid", "kid"), num_images=10000)        # doctest: +SKIP
    {'fid': 12.3, 'kid': 0.004, 'kid_std': 0.0002}
    >>> evaluate_folders("data/real", "samples/", metrics="fid,kid,pr")   # doctest: +SKIP

Every metric sees the RGB view of the images (:func:`as_uint8_rgb`: 1 or 2 channels -> the
luma replicated, 4 or more -> channels 0-2); non-square images are stretched to the feature
network's square input (Inception: 299 x 299, as torch-fidelity and clean-fid do).

Importing this package registers ``fd``, ``fid``, ``kid`` and ``pr`` in ``projected_gan.METRICS``.
"""

from projected_gan.metrics.base import FeatureExtractor, Metric, build_metrics, module_fingerprint
from projected_gan.metrics.evaluate import (
    GeneratorFn,
    check_image_shape,
    compare_images,
    dataset_image_shape,
    evaluate,
    evaluate_real_split,
)
from projected_gan.metrics.features import (
    INCEPTION,
    FeatureNetworkMetric,
    PooledFeatures,
    as_uint8_rgb,
    metric_view,
    quantize_images,
)
from projected_gan.metrics.folders import evaluate_folders, folder_size
from projected_gan.metrics.frechet import (
    FrechetDistance,
    FrechetInceptionDistance,
    frechet_distance,
)
from projected_gan.metrics.inception import InceptionFeatures, resize_tf1_bilinear
from projected_gan.metrics.inception_weights import (
    FID_HELPER_SHA256,
    INCEPTION_URL,
    INCEPTION_WEIGHTS_ENV,
    MetricWeightsError,
    resolve_inception_weights,
)
from projected_gan.metrics.kid import KernelDistance, kid
from projected_gan.metrics.precision_recall import PrecisionRecall, precision_recall
from projected_gan.metrics.stats import FeatureStats
from projected_gan.metrics.stats_cache import (
    CACHE_ENV,
    StatsCache,
    default_cache_dir,
    real_stats_key,
)

__all__ = [
    "CACHE_ENV",
    "FID_HELPER_SHA256",
    "INCEPTION",
    "INCEPTION_URL",
    "INCEPTION_WEIGHTS_ENV",
    "FeatureExtractor",
    "FeatureNetworkMetric",
    "FeatureStats",
    "FrechetDistance",
    "FrechetInceptionDistance",
    "GeneratorFn",
    "InceptionFeatures",
    "KernelDistance",
    "Metric",
    "MetricWeightsError",
    "PooledFeatures",
    "PrecisionRecall",
    "StatsCache",
    "as_uint8_rgb",
    "build_metrics",
    "check_image_shape",
    "compare_images",
    "dataset_image_shape",
    "default_cache_dir",
    "evaluate",
    "evaluate_folders",
    "evaluate_real_split",
    "folder_size",
    "frechet_distance",
    "kid",
    "metric_view",
    "module_fingerprint",
    "precision_recall",
    "quantize_images",
    "real_stats_key",
    "resize_tf1_bilinear",
    "resolve_inception_weights",
]
