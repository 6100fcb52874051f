"""``DataSpec``: what data a run trains on, in the loader's own words (the spec's ``data``).

:func:`~projected_gan.data.load.load_image_dataset` records the DataSpec of every dataset it
loads (``dataset.spec``), and :func:`~projected_gan.data.load.load_dataset` loads one; so the
data of a run, built from a spec or by hand, is described by this one model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from projected_gan.sizes import Size, as_size

__all__ = ["FITS", "MAX_CHANNELS", "DataSpec"]

MAX_CHANNELS = 16  # 1 luma, 2 luma + alpha, 3 RGB, 4 RGBA or RGB + depth, more: multi-spectral
FITS = ("crop", "pad", "stretch")


class DataSpec(BaseModel):
    """Where the images come from and how they are prepared."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    path: str | None = Field(None, description="image folder or zip; null = the shipped flowers64")
    resolution: int | tuple[int, int] = Field(
        64,
        description="training image size: one side (square) or [height, width]; the generator "
        "says which sizes it makes",
    )
    fit: Literal["crop", "pad", "stretch"] = Field(
        "crop",
        description="images of another aspect: crop the centre, pad with black, or stretch",
    )
    channels: int = Field(
        3,
        description="1 luma, 2 luma + alpha, 3 RGB, 4 RGBA (or 4+ channels from .npy arrays: "
        "RGB + depth, multi-spectral); RGB channels first",
    )
    mirror: bool = Field(False, description="add x-flipped copies (doubles the dataset)")
    conditional: bool = Field(
        False, description="labels from dataset.json at the data's root, else class sub-folders"
    )
    workers: int = Field(
        2, ge=1, description="threads decoding into the cache; processes decoding when streaming"
    )
    cache_dir: str | None = Field(None, description="decoded-dataset cache (default ~/.cache)")
    storage: Literal["auto", "cache", "stream"] = Field(
        "auto",
        description="cache: decode once into a file every process maps; stream: decode on the "
        "fly in data.workers processes, nothing cached; auto: cache unless it would not fit "
        "the free disk",
    )
    strict: bool = Field(False, description="fail on the first unreadable image instead of skip")
    min_images: int = Field(16, ge=1, description="fail if fewer readable images remain")
    max_images: int | None = Field(None, ge=1, description="use only the first N images")

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, v: object) -> int | tuple[int, int]:
        h, w = as_size(v, "resolution")  # type: ignore[arg-type]
        if not (16 <= h <= 2048 and 16 <= w <= 2048):
            raise ValueError(f"each side must be between 16 and 2048 pixels, got {v!r}")
        return h if h == w else (h, w)  # a square is one int, however it was written

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: int) -> int:
        if not 1 <= v <= MAX_CHANNELS:
            raise ValueError(f"must be between 1 and {MAX_CHANNELS}, got {v}")
        return v

    @property
    def size(self) -> Size:
        """``(height, width)`` of the training images."""
        return as_size(self.resolution)
