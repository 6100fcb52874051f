"""Where the dot texture of short CPU runs comes from: spectra of images and of D's gradient.

    python benchmarks/texture.py                     # gradient bands for blur 0/1/2, 64 + 128 px
    python benchmarks/texture.py --feature-network tf_efficientnet_lite1 --blur 0,1

A generator learns from the gradient of D's output with respect to its images. This script
measures where that gradient's energy sits in frequency, next to where the real photos' power
sits, on the shipped flowers (64 px): four bands of the larger of the two axis frequencies,
``[0, 1/16)``, ``[1/16, 1/8)``, ``[1/8, 1/4)`` and ``[1/4, 1/2]`` cycles per pixel (periods
over 16 px, 8-16, 4-8 and 2-4 px). It also scores an untrained FastGAN-lite's samples with
:func:`texture_scores`, to tell a texture G is born with from one it learns.

:func:`texture_scores` is also what ``demo_recipes.py`` records for every trained candidate.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

BANDS = ((0.0, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1 / 4), (1 / 4, 0.51))


def luma_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Mean power spectrum ``(H, W)`` (DC at [0, 0]) of the luma of uint8 ``(N, 3, H, W)``.

    A Hann window first, so the jump between opposite image borders (the FFT wraps around)
    does not spread energy over the high frequencies of every image.
    """
    x = images.float() / 255
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    y = y - y.mean((1, 2), keepdim=True)
    h, w = y.shape[-2:]
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)
    return torch.fft.fft2(y * window).abs().pow(2).mean(0)


def texture_scores(fakes: torch.Tensor, reals: torch.Tensor) -> dict[str, Any]:
    """How much fakes over-represent high spatial frequencies, against the reals (uint8 NCHW).

    A repeating dot or checkerboard texture puts its energy at a few high frequencies.
    ``hf_excess``: log10 of fake over real power summed over frequencies above a quarter of
    Nyquist (0 = as much as the reals). ``peak``: the largest log10 ratio at one such frequency,
    with its period in pixels along each axis (``peak_period``).
    """
    pf, pr = luma_spectrum(fakes), luma_spectrum(reals)
    h, w = pf.shape
    fy = torch.fft.fftfreq(h).abs()[:, None]
    fx = torch.fft.fftfreq(w).abs()[None, :]
    band = torch.maximum(fy, fx) > 0.125  # above a quarter of Nyquist (0.5 cycles/px)
    ratio = torch.log10(pf.clamp_min(1e-12) / pr.clamp_min(1e-12))
    ratio = torch.where(band, ratio, torch.full_like(ratio, -99))
    i, j = divmod(int(ratio.argmax()), w)
    period = [round(1 / float(f), 2) if f > 0 else None for f in (fy[i, 0], fx[0, j])]
    return {
        "hf_excess": float(torch.log10(pf[band].sum() / pr[band].sum())),
        "peak": float(ratio.max()),
        "peak_period": period,
    }


def band_shares(power: torch.Tensor) -> list[float]:
    """Share of ``power`` ``(H, W)`` (DC at [0, 0]) in each of :data:`BANDS`."""
    h, w = power.shape
    f = torch.maximum(torch.fft.fftfreq(h).abs()[:, None], torch.fft.fftfreq(w).abs()[None, :])
    total = power.sum()
    return [float(power[(f >= lo) & (f < hi)].sum() / total) for lo, hi in BANDS]


def gradient_power(D: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mean power spectrum ``(H, W)`` of d(sum of D's logits)/d(image), channel-averaged.

    ``images`` ``(B, 3, H, W)`` in [-1, 1]; no window (a gradient is not a photo).
    """
    x = images.clone().requires_grad_(True)
    D(x).sum().backward()
    return torch.fft.fft2(x.grad.mean(1)).abs().pow(2).mean(0)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from projected_gan import ProjectedDiscriminator, create
    from projected_gan.data import default_dataset_path, load_image_dataset
    from projected_gan.images import to_uint8

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--feature-network", default="tf_efficientnet_lite0")
    p.add_argument("--input-sizes", default="128,64", help="the feature network's input sides")
    p.add_argument("--blur", default="0,1,2", help="binomial blur passes to compare")
    p.add_argument("--images", type=int, default=32)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    reals = load_image_dataset(default_dataset_path(), 64).images
    x = reals[: args.images].float() / 127.5 - 1
    real_power = luma_spectrum(reals)
    print("bands (cycles/px):", "  ".join(f"[{lo:.3f},{hi:.3f})" for lo, hi in BANDS))
    print(f"{'real photos: power':<40}", _fmt(band_shares(real_power)))
    half = reals.shape[0] // 2
    print(f"real half vs other half: {texture_scores(reals[:half], reals[half:])}")
    with torch.no_grad():
        G = create("generators", "fastgan_lite", img_resolution=64, ngf=32).eval()
        fakes = to_uint8(G(torch.randn(256, G.z_dim), None))
    print(f"untrained fastgan_lite vs reals: {texture_scores(fakes, reals)}")
    rows = []
    for size in (int(s) for s in args.input_sizes.split(",")):
        for blur in (int(b) for b in args.blur.split(",")):
            fnet = {"name": args.feature_network, "input_size": size, "blur": blur}
            D = ProjectedDiscriminator(feature_network=fnet, augment=None, img_resolution=64)
            shares = band_shares(gradient_power(D, x))
            rows.append({"input_size": size, "blur": blur, "gradient_bands": shares})
            print(f"{f'gradient: {args.feature_network} @{size}, blur {blur}':<40}", _fmt(shares))
    return rows


def _fmt(shares: list[float]) -> str:
    return "  ".join(f"{s:^15.3f}" for s in shares)


if __name__ == "__main__":
    main()
