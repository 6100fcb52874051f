"""Inference helpers: latents from seeds, seed lists, slerp/lerp, interpolation sequences."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from projected_gan.errors import UsageError
from projected_gan.generators.layers import Generator
from projected_gan.sizes import Size, as_size

__all__ = [
    "grid_latents",
    "image_size",
    "interpolation_frames",
    "latents_from_seeds",
    "lerp",
    "parse_seeds",
    "slerp",
]

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_seeds(text: str) -> list[int]:
    """``"0-7,12"`` -> ``[0, 1, ..., 7, 12]``: comma-separated ints and inclusive ranges ``a-b``."""
    if not isinstance(text, str):
        raise UsageError(
            f"seeds must be a string like '0-7,12', got {type(text).__name__}", field="seeds"
        )
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UsageError(
                f"seeds {text!r}: empty entry (expected e.g. '0-7,12')",
                field="seeds",
            )
        if part.isdigit():
            seeds.append(int(part))
            continue
        match = _RANGE.match(part)
        if match is None:
            raise UsageError(
                f"seeds {text!r}: {part!r} is not a non-negative int or a range 'a-b'",
                field="seeds",
            )
        lo, hi = int(match[1]), int(match[2])
        if lo > hi:
            raise UsageError(
                f"seeds {text!r}: range {part!r} runs backwards (need a <= b)", field="seeds"
            )
        seeds.extend(range(lo, hi + 1))
    return seeds


def latents_from_seeds(
    seeds: Sequence[int],
    z_dim: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """z ``(N, z_dim)`` ~ N(0, I), row ``i`` drawn by its own CPU generator seeded ``seeds[i]``.

    A seed gives the same z whatever else is in the list and whatever ``device`` is.
    """
    if len(seeds) == 0:
        raise UsageError(
            "seeds must hold at least one seed",
            field="seeds",
        )
    rows = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise UsageError(
                f"each seed must be an int in [0, 2**63), got {seed!r}",
                field="seeds",
            )
        g = torch.Generator().manual_seed(seed)
        rows.append(torch.randn(z_dim, generator=g))
    return torch.stack(rows).to(device=device, dtype=dtype)


def lerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Linear interpolation ``a + t * (b - a)``; ``t`` a float or tensor broadcastable to ``a``."""
    return a + (b - a) * t


def slerp(a: Tensor, b: Tensor, t: float | Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation over the last dim (for z on the hypersphere); lengths are lerped.

    ``a``, ``b`` ``(..., D)``; ``t`` a float or a tensor broadcastable to ``(..., 1)``. Falls back
    to lerp where ``a`` and ``b`` are (anti)parallel, without branching on the data.
    """
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.ndim == 0:
        t = t.reshape(1)
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    ua, ub = a / norm_a.clamp_min(eps), b / norm_b.clamp_min(eps)
    cos = (ua * ub).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    safe = sin.abs() > eps
    sin_safe = torch.where(safe, sin, torch.ones_like(sin))
    wa = torch.where(safe, torch.sin((1 - t) * omega) / sin_safe, 1 - t)
    wb = torch.where(safe, torch.sin(t * omega) / sin_safe, t)
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    return direction * lerp(norm_a, norm_b, t)


def _labels_for(G: Generator, c: int | Sequence[int] | Tensor | None, n: int) -> Tensor | None:
    """One-hot labels ``(n, c_dim)`` (float, so they can be interpolated) or None."""
    if G.c_dim == 0:
        if c is not None:
            raise UsageError(
                "c was given but the generator is unconditional (c_dim=0)",
                field="c",
            )
        return None
    if c is None:
        raise UsageError(
            f"c is required: the generator is conditional (c_dim={G.c_dim})", field="c"
        )
    idx = torch.as_tensor([c] * n if isinstance(c, int) else c, dtype=torch.long)
    if idx.shape != (n,):
        raise UsageError(
            f"c must be one class or one class per seed ({n}), got {tuple(idx.shape)}", field="c"
        )
    if idx.min() < 0 or idx.max() >= G.c_dim:
        raise UsageError(
            f"c holds classes outside [0, {G.c_dim}): {idx.tolist()}",
            field="c",
        )
    return torch.nn.functional.one_hot(idx, G.c_dim).float().to(G.device)


def interpolation_frames(
    G: Generator,
    seeds: Sequence[int],
    frames_per_pair: int,
    space: str = "w",
    c: int | Sequence[int] | Tensor | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    loop: bool = False,
) -> Iterator[Tensor]:
    """Yield image batches ``(b, img_channels, H, W)`` walking through the seeds' latents.

    Between consecutive keyframes there are ``frames_per_pair`` frames (the first is the keyframe
    itself); the last keyframe ends the walk, or with ``loop`` the walk returns to the first seed.
    ``space="w"`` maps keyframes once and lerps in w; ``space="z"`` slerps z and maps each frame.
    ``c``: one class, or one class per seed (classes then blend between keyframes). Runs under
    ``torch.no_grad()``; per-layer noise defaults to ``"const"`` so frames do not flicker.
    Put ``G`` in eval mode first (BatchNorm running statistics, frozen ``w_avg``).
    """
    if space not in ("w", "z"):
        raise UsageError(
            f"space must be 'w' or 'z', got {space!r}",
            field="space",
        )
    if not isinstance(frames_per_pair, int) or frames_per_pair < 1:
        raise UsageError(
            f"frames_per_pair must be a positive int, got {frames_per_pair!r}",
            field="frames_per_pair",
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(
            f"batch_size must be a positive int, got {batch_size!r}", field="batch_size"
        )
    keys_needed = 1 if loop else 2
    if len(seeds) < keys_needed:
        raise UsageError(
            f"need at least {keys_needed} seeds to interpolate, got {len(seeds)}", field="seeds"
        )

    z = latents_from_seeds(seeds, G.z_dim, device=G.device)
    labels = _labels_for(G, c, len(seeds))
    # Arguments are checked above, at call time; frames are rendered lazily below.
    return _frames(
        G, z, labels, frames_per_pair, space, truncation_psi, noise_mode, batch_size, loop
    )


def _frames(
    G: Generator,
    z: Tensor,
    labels: Tensor | None,
    frames_per_pair: int,
    space: str,
    truncation_psi: float,
    noise_mode: str,
    batch_size: int,
    loop: bool,
) -> Iterator[Tensor]:
    if loop:
        z = torch.cat([z, z[:1]])
        labels = None if labels is None else torch.cat([labels, labels[:1]])
    pairs = z.shape[0] - 1
    # Frame f sits between keyframes k = f // n and k + 1 at fraction (f % n) / n.
    total = pairs * frames_per_pair + (0 if loop else 1)
    frame = torch.arange(total, device=G.device)
    k = (frame // frames_per_pair).clamp_max(pairs - 1)
    t = (frame - k * frames_per_pair).float() / frames_per_pair

    keys = None
    if space == "w":
        with torch.no_grad():
            keys = G.mapping(z, labels, truncation_psi)
    for start in range(0, total, batch_size):
        ks, ts = k[start : start + batch_size], t[start : start + batch_size]
        with torch.no_grad():
            if keys is not None:
                tt = ts.reshape(-1, *([1] * (keys.ndim - 1)))
                images = G.synthesis(lerp(keys[ks], keys[ks + 1], tt), noise_mode=noise_mode)
            else:
                zs = slerp(z[ks], z[ks + 1], ts[:, None])
                cs = None if labels is None else lerp(labels[ks], labels[ks + 1], ts[:, None])
                images = G(zs, cs, truncation_psi, noise_mode=noise_mode)
        yield images


def image_size(G: torch.nn.Module) -> Size:
    """``(H, W)`` of a generator's images: its ``img_size``, else its ``img_resolution`` (one side
    or ``(H, W)``, for generators written before non-square sizes), else 64x64."""
    size = getattr(G, "img_size", None)
    return as_size(size if size is not None else getattr(G, "img_resolution", 64))


def grid_latents(G: Generator, seed: int, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The fixed latents ``(n, z_dim)`` (and labels, cycling through the classes) of the grids.

    By pixels per image: 64 images up to 64x64, 32 up to 256x256, else 16 (64x96 images: 32);
    drawn from ``seed`` on the CPU, so every device shows the same faces.
    """
    h, w = image_size(G)
    pixels = h * w
    n = 64 if pixels <= 64 * 64 else 32 if pixels <= 256 * 256 else 16
    gen = torch.Generator().manual_seed(seed + 12345)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    c_dim = getattr(G, "c_dim", 0)
    c = (torch.arange(n) % c_dim).to(device) if c_dim else None
    return z, c
