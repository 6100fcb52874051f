"""What every metric provides (a feature extractor to share, a comparison of two sets), and
:func:`build_metrics`, which makes metrics from registry names with routed options."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from projected_gan.metrics.stats import FeatureStats
from projected_gan.registry import METRICS

__all__ = ["FeatureExtractor", "Metric", "build_metrics", "module_fingerprint"]


class FeatureExtractor(nn.Module):
    """Frozen map from uint8 images ``(B, 3, H, W)`` in [0, 255] to features ``(B, D)`` float32.

    ``identity`` names the feature space exactly (network, weights hash, resize, pooling); it is
    part of the real-statistics cache key, so two extractors with equal identities must give
    equal features.
    """

    identity: str = ""


class Metric:
    """A metric over two image sets, computed from their :class:`FeatureStats`.

    Subclasses set ``max_items`` (raw features each side needs; 0 = moments only) and
    ``results`` (the result names), and implement
    :meth:`extractor_key` (cheap, equal for metrics that can share one feature pass),
    :meth:`build_extractor` and :meth:`compute`.
    """

    max_items: int = 0
    results: tuple[str, ...] = ()  # the keys :meth:`compute` returns

    def extractor_key(self) -> str:
        raise NotImplementedError

    def build_extractor(self) -> FeatureExtractor:
        raise NotImplementedError

    def extractor(self) -> FeatureExtractor:
        """The extractor, built on first use and kept: reuse the metric to load weights once."""
        if getattr(self, "_extractor", None) is None:
            self._extractor = self.build_extractor()
        return self._extractor

    def compute(self, real: FeatureStats, fake: FeatureStats, seed: int = 0) -> dict[str, float]:
        """Compare the statistics of reals and fakes; returns ``{result_name: value}``."""
        raise NotImplementedError


def module_fingerprint(module: nn.Module) -> str:
    """sha256 (first 16 hex digits) over the names, dtypes, shapes and bytes of a state dict.

    Distinguishes e.g. pretrained from random weights in cache keys. Cost: one pass over the
    parameters on the host (Inception-v3, 95 MB: about 0.1 s).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _params(name: str) -> set[str]:
    """Keyword names a metric factory accepts (``{"**"}`` if it takes any)."""
    params = inspect.signature(METRICS.get(name)).parameters.values()
    return {"**" if p.kind is p.VAR_KEYWORD else p.name for p in params}


def build_metrics(
    metrics: str | Sequence[str | Metric] = ("fd",), **metric_options: Any
) -> list[Metric]:
    """Metric objects from registry names (``"fd,kid"`` or a list; instances pass through).

    Options are routed by name:

    - ``fid={"weights": path}`` or ``fid_weights=path`` (``<metric>_<argument>``) go to that
      metric only;
    - a plain option such as ``feature_network="..."`` goes to every requested metric whose
      factory accepts it.

    Options meant for registered metrics that were not requested are ignored (a trainer can pass
    its whole metrics config); an option that no metric accepts raises ``TypeError``.
    """
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise ValueError("metrics must name at least one metric, e.g. ('fd',)")
    requested = [m for m in metrics if isinstance(m, str)]
    known = list(dict.fromkeys([*METRICS.names(plugins=False), *requested]))
    per_metric: dict[str, dict[str, Any]] = {}
    shared: dict[str, Any] = {}
    for key, value in metric_options.items():
        if isinstance(value, dict) and key in METRICS:
            per_metric.setdefault(key, {}).update(value)
            continue
        owner = next(
            (n for n in known if key.startswith(n + "_") and key[len(n) + 1 :] in _params(n)),
            None,
        )
        if owner is not None:
            per_metric.setdefault(owner, {})[key[len(owner) + 1 :]] = value
        else:
            shared[key] = value
    unknown = sorted(k for k in shared if not any(k in _params(n) for n in known))
    if unknown:
        raise TypeError(
            f"metric option(s) {unknown} are not accepted by any metric ({', '.join(known)}); "
            "see `projected-gan describe metrics NAME` for each metric's options"
        )
    built: list[Metric] = []
    for item in metrics:
        if isinstance(item, Metric):
            built.append(item)
            continue
        accepts = _params(item)
        kwargs = {k: v for k, v in shared.items() if "**" in accepts or k in accepts}
        built.append(METRICS.get(item)(**{**kwargs, **per_metric.get(item, {})}))
    return built
