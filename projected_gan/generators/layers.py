"""What every generator shares: the :class:`Generator` interface, noise, labels, z normalisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "NOISE_MODES",
    "SUPPORTED_RESOLUTIONS",
    "Generator",
    "LabelEmbedding",
    "NoiseInjection",
    "normalize_2nd_moment",
]

SUPPORTED_RESOLUTIONS = (32, 64, 128, 256, 512, 1024)
NOISE_MODES = ("random", "const", "none")


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Divide ``x`` by the root-mean-square of its entries along ``dim`` (onto the hypersphere)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class NoiseInjection(nn.Module):
    """Adds ``strength * noise`` with noise of shape ``(B, 1, H, W)``; ``strength`` starts at 0.

    ``noise_mode``: ``"random"`` draws fresh N(0, 1) noise on the input's device from the global
    RNG every call; ``"const"`` uses a fixed buffer drawn at construction; ``"none"`` adds nothing.
    """

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, noise_mode: str = "random") -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        else:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        return x + noise * self.strength.to(x.dtype)


class LabelEmbedding(nn.Embedding):
    """Class labels -> ``(B, embedding_dim)``: int indices ``(B,)`` or (soft) one-hot ``(B, C)``.

    One-hot rows select exactly the row an index would, so both label forms agree; soft labels
    (used when interpolating between classes) mix rows linearly.
    """

    def forward(self, c: Tensor) -> Tensor:
        if c.ndim == 2:
            return c.to(self.weight.dtype) @ self.weight
        return super().forward(c)


class Generator(nn.Module):
    """Interface of every generator: ``G(z, c) -> (B, img_channels, R, R)`` in about [-1, 1].

    Subclasses implement :meth:`mapping` (``z``, ``c`` -> ``w``) and :meth:`synthesis`
    (``w`` -> images); :meth:`forward` chains them, so interpolating ``w`` works for every family.

    Attributes:
        z_dim: latent size; ``z`` is ``(B, z_dim)`` drawn from N(0, I).
        c_dim: number of classes, 0 for an unconditional generator.
        img_resolution: output height and width, one of 32, 64, 128, 256, 512, 1024.
        img_channels: 3 (RGB) or 1 (grayscale).
        noise_mode: default per-layer noise, ``"random"`` | ``"const"`` | ``"none"``.
    """

    def __init__(
        self,
        *,
        z_dim: int,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        if img_resolution not in SUPPORTED_RESOLUTIONS:
            raise ValueError(
                f"img_resolution must be one of {SUPPORTED_RESOLUTIONS}, got {img_resolution!r}"
            )
        if img_channels not in (1, 3):
            raise ValueError(f"img_channels must be 1 or 3, got {img_channels!r}")
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"z_dim must be a positive int, got {z_dim!r}")
        if not isinstance(c_dim, int) or c_dim < 0:
            raise ValueError(f"c_dim must be an int >= 0 (0 = unconditional), got {c_dim!r}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.noise_mode = self._check_noise_mode(noise_mode)

    # ------------------------------------------------------------------ interface
    def mapping(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``z`` ``(B, z_dim)`` and labels -> intermediate latent ``w`` (shape per family)."""
        raise NotImplementedError

    def synthesis(self, w: Tensor, noise_mode: str | None = None) -> Tensor:
        """``w`` from :meth:`mapping` -> images ``(B, img_channels, R, R)`` in about [-1, 1]."""
        raise NotImplementedError

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str | None = None,
    ) -> Tensor:
        """``z`` ``(B, z_dim)``, ``c`` ``(B,)`` int or ``(B, c_dim)`` one-hot -> images."""
        return self.synthesis(self.mapping(z, c, truncation_psi), noise_mode=noise_mode)

    # ------------------------------------------------------------------ inference
    @property
    def device(self) -> torch.device:
        """Device of the generator's parameters."""
        return next(self.parameters()).device

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` uniform class indices ``(n,)`` on the module's device (conditional only)."""
        if self.c_dim == 0:
            raise ValueError("random_labels: this generator is unconditional (c_dim=0)")
        src = self.device if generator is None else generator.device
        return torch.randint(self.c_dim, (n,), generator=generator, device=src).to(self.device)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        c: Tensor | int | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str | None = None,
    ) -> Tensor:
        """Draw ``n`` images ``(n, img_channels, R, R)``: z ~ N(0, I) and, when conditional and
        ``c`` is None, uniform random classes. ``c`` may be one int for all ``n`` images.

        With ``generator`` the result depends on it alone: per-layer noise is drawn from a forked
        global RNG seeded from ``generator``, and the caller's RNG state is left untouched.
        Gradients follow the caller's grad mode (wrap in ``torch.no_grad()`` for inference).
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        device = self.device
        src = device if generator is None else generator.device
        z = torch.randn(n, self.z_dim, generator=generator, device=src).to(device)
        if isinstance(c, int):
            c = torch.full((n,), c, dtype=torch.long, device=device)
        elif c is None and self.c_dim > 0:
            c = self.random_labels(n, generator)
        if generator is None:
            return self(z, c, truncation_psi, noise_mode)
        seed = int(torch.randint(2**62, (1,), generator=generator, device=src))
        devices = [] if device.type == "cpu" else [_device_index(device)]
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.default_generator.manual_seed(seed)
            if devices:  # seed only the module's device, the one fork_rng restores
                accelerator = torch.get_device_module(device.type)
                with accelerator.device(devices[0]):
                    accelerator.manual_seed(seed)
            return self(z, c, truncation_psi, noise_mode)

    # ------------------------------------------------------------------ checks
    def _check_z(self, z: Tensor) -> None:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, z_dim={self.z_dim}), got {shape}")

    def _check_labels(self, c: Tensor | None, batch: int) -> Tensor | None:
        """Validate ``c`` for a batch of ``batch``; None for unconditional generators.

        Shapes and dtypes are checked eagerly (free). The class-range check needs the values: on
        CPU it raises a ValueError at once; on accelerators and under torch.compile it is an
        asynchronous device assertion, so the forward pass never waits for the host.
        """
        if self.c_dim == 0:
            if c is not None and c.numel() > 0:
                raise ValueError(
                    f"c was given but this generator is unconditional (c_dim=0); got c of shape "
                    f"{tuple(c.shape)}. Build it with c_dim > 0 or pass c=None."
                )
            return None
        expected = f"class indices (B,) or one-hot (B, {self.c_dim})"
        if c is None:
            raise ValueError(
                f"c is required: this generator is conditional (c_dim={self.c_dim}); "
                f"pass {expected}"
            )
        if not isinstance(c, Tensor):
            raise ValueError(f"c must be a tensor of {expected}, got {type(c).__name__}")
        if c.ndim == 2:
            if c.shape != (batch, self.c_dim):
                raise ValueError(f"c must be {expected} with B={batch}, got {tuple(c.shape)}")
            return c
        if c.ndim != 1 or c.shape[0] != batch:
            raise ValueError(f"c must be {expected} with B={batch}, got {tuple(c.shape)}")
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ValueError(f"c of shape (B,) must hold integer class indices, got {c.dtype}")
        in_range = ((c >= 0) & (c < self.c_dim)).all()
        if c.device.type == "cpu" and not torch.compiler.is_compiling():
            if not bool(in_range):
                raise ValueError(
                    f"c holds class indices outside [0, {self.c_dim}): "
                    f"min {int(c.min())}, max {int(c.max())}"
                )
        else:
            torch._assert_async(in_range, f"c: class index outside [0, {self.c_dim})")
        return c

    @staticmethod
    def _check_noise_mode(noise_mode: str) -> str:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return noise_mode

    def _noise_mode(self, noise_mode: str | None) -> str:
        return self.noise_mode if noise_mode is None else self._check_noise_mode(noise_mode)

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, noise_mode={self.noise_mode!r}"
        )


def _device_index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    return torch.get_device_module(device.type).current_device()
