"""Metrics for generators: ``fd`` and ``kid`` in any feature network's space, standard ``fid``.

    >>> from projected_gan.metrics import evaluate
    >>> evaluate(lambda n, c: G_ema(torch.randn(n, 256, device="cuda"), c), dataset,
    ...          metrics=("fd", "kid"), num_images=5000)           # doctest: +SKIP
    {'fd': 12.3, 'kid': 0.004, 'kid_std': 0.0002}

Importing this package registers ``fd``, ``kid`` and ``fid`` in ``projected_gan.METRICS``.
"""

from projected_gan.metrics.base import FeatureExtractor, Metric, module_fingerprint
from projected_gan.metrics.evaluate import (
    GeneratorFn,
    build_metrics,
    compare_images,
    evaluate,
    evaluate_real_split,
)
from projected_gan.metrics.features import (
    FeatureNetworkMetric,
    PooledFeatures,
    as_uint8_rgb,
    quantize_images,
)
from projected_gan.metrics.frechet import FrechetDistance, frechet_distance
from projected_gan.metrics.inception import (
    INCEPTION_URL,
    INCEPTION_WEIGHTS_ENV,
    FrechetInceptionDistance,
    InceptionFeatures,
    MetricWeightsError,
    resolve_inception_weights,
)
from projected_gan.metrics.kid import KernelDistance, kid
from projected_gan.metrics.stats import FeatureStats
from projected_gan.metrics.stats_cache import CACHE_ENV, StatsCache, default_cache_dir

__all__ = [
    "CACHE_ENV",
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
    "StatsCache",
    "as_uint8_rgb",
    "build_metrics",
    "compare_images",
    "default_cache_dir",
    "evaluate",
    "evaluate_real_split",
    "frechet_distance",
    "kid",
    "module_fingerprint",
    "quantize_images",
    "resolve_inception_weights",
]
