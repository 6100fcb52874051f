"""What every generator shares: the :class:`Generator` interface, the image size rule, noise,
labels, z normalisation.

Image sizes (every family, one rule, :func:`check_image_size`): the short side is one of
:data:`SUPPORTED_RESOLUTIONS` (32 ... 1024) and the long side a multiple of a quarter of the short
side, at most 4x the short side. The first block is then ``4 x k`` (or ``k x 4``), ``k = 4..16``
(:func:`first_block_size`), and every x2 stage keeps the aspect: 64x96 grows from 4x6, 32x64
from 4x8, 64x32 from 8x4; squares from 4x4, exactly as before.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from projected_gan.sizes import Size, SizeLike, as_size, size_text

__all__ = [
    "MAX_CHANNELS",
    "NOISE_MODES",
    "SUPPORTED_RESOLUTIONS",
    "Generator",
    "LabelEmbedding",
    "NoiseInjection",
    "check_image_size",
    "first_block_size",
    "normalize_2nd_moment",
    "stage_size",
]

SUPPORTED_RESOLUTIONS = (32, 64, 128, 256, 512, 1024)  # the short side
MAX_CHANNELS = 16
MAX_ASPECT = 4  # long side / short side
NOISE_MODES = ("random", "const", "none")

_SIZE_RULE = (
    f"the short side one of {', '.join(map(str, SUPPORTED_RESOLUTIONS))} and the long side a "
    f"multiple of a quarter of the short side, at most {MAX_ASPECT}x it "
    "(e.g. 64, [64, 96], [32, 64], [128, 512], as [height, width])"
)


def check_image_size(img_resolution: SizeLike, name: str = "img_resolution") -> Size:
    """``img_resolution`` (one side, or ``(H, W)``) -> ``(H, W)`` if a generator can make it.

    Raises ValueError in one line naming ``name``, the rule and valid examples otherwise.
    """
    try:
        h, w = as_size(img_resolution, name)
    except ValueError:
        raise ValueError(
            f"{name} must be one side or [height, width] with {_SIZE_RULE}; got {img_resolution!r}"
        ) from None
    short, long = min(h, w), max(h, w)
    if short not in SUPPORTED_RESOLUTIONS or long % (short // 4) or long > MAX_ASPECT * short:
        shown = h if h == w else f"{size_text((h, w))} (height x width)"
        raise ValueError(f"{name} {shown} is not supported: need {_SIZE_RULE}")
    return (h, w)


def first_block_size(img_resolution: SizeLike) -> Size:
    """``(h0, w0)`` of the first (4-on-the-short-side) block: 64x96 -> (4, 6), 64 -> (4, 4)."""
    h, w = check_image_size(img_resolution)
    quarter = min(h, w) // 4
    return (h // quarter, w // quarter)


def stage_size(img_resolution: SizeLike, stage: int) -> Size:
    """``(h, w)`` of the stage whose short side is ``stage`` (4, 8, ...): 64x96, 8 -> (8, 12)."""
    h0, w0 = first_block_size(img_resolution)
    return (h0 * stage // 4, w0 * stage // 4)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Divide ``x`` by the root-mean-square of its entries along ``dim`` (onto the hypersphere)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class NoiseInjection(nn.Module):
    """Adds ``strength * noise`` with noise of shape ``(B, 1, H, W)``; ``strength`` starts at 0.

    ``size``: the maps' ``H`` and ``W``, one int when square. ``noise_mode``: ``"random"`` draws
    fresh N(0, 1) noise on the input's device from the global RNG every call; ``"const"`` uses a
    fixed buffer drawn at construction; ``"none"`` adds nothing.
    """

    def __init__(self, size: SizeLike) -> None:
        super().__init__()
        h, w = as_size(size, "size")
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(1, 1, h, w))

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
    """Interface of every generator: ``G(z, c) -> (B, img_channels, H, W)`` in about [-1, 1].

    Subclasses implement :meth:`mapping` (``z``, ``c`` -> ``w``) and :meth:`synthesis`
    (``w`` -> images); :meth:`forward` chains them, so interpolating ``w`` works for every family.

    Attributes:
        z_dim: latent size; ``z`` is ``(B, z_dim)`` drawn from N(0, I).
        c_dim: number of classes, 0 for an unconditional generator.
        img_resolution: the output size as given, normalised: an int when square (32 ... 1024),
            else ``(H, W)``; see :func:`check_image_size` for the sizes every family supports.
        img_size: ``(H, W)``, also for squares; code that needs the two sides reads this.
        img_channels: 1 to 16: 1 grayscale, 2 gray + alpha, 3 RGB, 4 RGBA, more for extra
            channels (RGB first, see :func:`projected_gan.images.rgb_view`).
        noise_mode: default per-layer noise, ``"random"`` | ``"const"`` | ``"none"``.
    """

    def __init__(
        self,
        *,
        z_dim: int,
        c_dim: int,
        img_resolution: SizeLike,
        img_channels: int,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        h, w = check_image_size(img_resolution)
        if (
            not isinstance(img_channels, int)
            or isinstance(img_channels, bool)
            or not 1 <= img_channels <= MAX_CHANNELS
        ):
            raise ValueError(
                f"img_channels must be an int in 1..{MAX_CHANNELS} (1 gray, 3 RGB, 4 RGBA, ...), "
                f"got {img_channels!r}"
            )
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"z_dim must be a positive int, got {z_dim!r}")
        if not isinstance(c_dim, int) or c_dim < 0:
            raise ValueError(f"c_dim must be an int >= 0 (0 = unconditional), got {c_dim!r}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.img_resolution: int | Size = h if h == w else (h, w)
        self.img_channels = img_channels
        self.noise_mode = self._check_noise_mode(noise_mode)

    @property
    def img_size(self) -> Size:
        """Output ``(H, W)``, also for squares."""
        return as_size(self.img_resolution)

    # ------------------------------------------------------------------ interface
    def mapping(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``z`` ``(B, z_dim)`` and labels -> intermediate latent ``w`` (shape per family)."""
        raise NotImplementedError

    def synthesis(self, w: Tensor, noise_mode: str | None = None) -> Tensor:
        """``w`` from :meth:`mapping` -> images ``(B, img_channels, H, W)`` in about [-1, 1]."""
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
        """Draw ``n`` images ``(n, img_channels, H, W)``: z ~ N(0, I) and, when conditional and
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
