"""``DataSpec``: what data a run trains on, in the loader's own words (the spec's ``data``).

:func:`~projected_gan.data.load.load_image_dataset` records the DataSpec of every dataset it
loads (``dataset.spec``), and :func:`~projected_gan.data.load.load_dataset` loads one; so the
data of a run, built from a spec or by hand, is described by this one model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CHANNELS", "DataSpec"]

CHANNELS = (1, 3)  # what the loader decodes to: luma or RGB


class DataSpec(BaseModel):
    """Where the images come from and how they are prepared."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    path: str | None = Field(None, description="image folder or zip; null = the shipped flowers64")
    resolution: int = Field(64, description="side of the square training images (power of two)")
    channels: int = Field(3, description="3 (RGB) or 1 (luma); training needs 3 for now")
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

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int) -> int:
        if not (v > 0 and v & (v - 1) == 0 and 16 <= v <= 1024):
            raise ValueError(f"must be a power of two between 16 and 1024, got {v}")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: int) -> int:
        if v not in CHANNELS:
            raise ValueError(f"must be one of {', '.join(map(str, CHANNELS))}, got {v}")
        return v
