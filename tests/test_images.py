"""Sample grids and image files: the layout for a count and an aspect, where each image lands,
and how each channel count is written (PNG modes, .npy) and shown (the RGB view)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from projected_gan.images import (
    grid_image,
    grid_shape,
    image_file_suffix,
    make_grid,
    save_array,
    save_image,
    save_image_grid,
)


@pytest.mark.parametrize(
    ("n", "aspect", "expected"),
    [
        (32, 1.0, (4, 8)),  # no empty cell, 2:1 at most: not 6 x 6 with 4 black cells
        (32, 1.5, (8, 4)),  # 64 x 96 landscape samples: 8 rows of 4, a 4:3 grid
        (32, 2 / 3, (4, 8)),  # 96 x 64 portrait samples: a 4:3 grid again
        (16, 1.0, (4, 4)),
        (36, 1.0, (6, 6)),
        (7, 1.0, (2, 4)),  # a prime: one empty cell rather than a 1 x 7 strip
        (3, 1.0, (2, 2)),
        (2, 1.0, (1, 2)),
        (1, 1.0, (1, 1)),
        (3, 4.0, (3, 1)),  # nothing within 2:1: the squarest of all
    ],
)
def test_grid_shape_fills_its_cells_and_stays_near_square(n, aspect, expected):
    rows, cols = grid_shape(n, aspect)
    assert (rows, cols) == expected
    assert rows * cols >= n and (rows - 1) * cols < n  # room for all, never an empty row


@pytest.mark.parametrize(("n", "aspect"), [(0, 1.0), (4, 0.0), (4, float("nan"))])
def test_grid_shape_refuses_nonsense(n, aspect):
    with pytest.raises(ValueError, match="grid_shape"):
        grid_shape(n, aspect)


def test_make_grid_places_images_row_major_with_the_aspects_layout():
    # 8 images of 2 x 3 (landscape): grid_shape(8, 1.5) is 4 rows of 2 (a 3:4 grid)
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 2, 3).contiguous()
    grid = make_grid(images)
    assert grid.shape == (1, 4 * 2, 2 * 3)
    for i in range(8):
        r, c = divmod(i, 2)
        assert (grid[0, r * 2 : r * 2 + 2, c * 3 : c * 3 + 3] == i).all()


def test_make_grid_pads_the_last_row_with_black():
    images = torch.full((7, 3, 2, 2), 200, dtype=torch.uint8)
    grid = make_grid(images)  # 2 rows of 4, one black cell
    assert grid.shape == (3, 4, 8)
    assert (grid[:, 2:, 6:] == 0).all() and (grid[:, :2, :] == 200).all()


def _random_uint8(*shape: int) -> torch.Tensor:
    return torch.randint(
        0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_save_image_keeps_every_channel_of_1_to_4(tmp_path, channels, mode):
    image = _random_uint8(channels, 5, 7)  # H 5, W 7: height and width not swapped
    save_image(image, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as pil:
        assert pil.mode == mode and pil.size == (7, 5)
        array = np.asarray(pil)
    expected = image.permute(1, 2, 0).numpy()
    assert np.array_equal(array.reshape(expected.shape), expected)
    assert image_file_suffix(channels) == ".png"


def test_save_image_maps_floats_like_to_uint8(tmp_path):
    save_image(torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 4), tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as pil:
        assert np.asarray(pil).tolist() == [[0, 128, 255, 255]]


def test_five_channels_go_to_npy_not_png(tmp_path):
    image = _random_uint8(5, 4, 6)
    with pytest.raises(ValueError, match=r"a PNG holds 1 to 4 channels, got 5.*save_array"):
        save_image(image, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert image_file_suffix(5) == ".npy"
    save_array(image, tmp_path / "x.npy")
    loaded = np.load(tmp_path / "x.npy")
    assert loaded.dtype == np.uint8 and loaded.shape == (4, 6, 5)
    assert np.array_equal(loaded, image.permute(1, 2, 0).numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]  # no temp file left


def test_grids_show_the_rgb_view_of_any_channel_count(tmp_path):
    images = _random_uint8(3, 6, 4, 5)  # 3 images of 4 x 5 with 6 channels
    grid = grid_image(images)
    assert grid.shape == (4 * 2, 5 * 2, 3)  # 2 x 2 cells, channels 0-2
    assert np.array_equal(grid[:4, :5], images[0, :3].permute(1, 2, 0).numpy())
    two = grid_image(images[:, :2])  # gray + alpha: the gray replicated, alpha dropped
    assert two.shape[-1] == 3 and np.array_equal(two[..., 0], two[..., 2])
    assert np.array_equal(two[:4, :5, 1], images[0, 0].numpy())
    assert grid_image(images[:, :1]).shape[-1] == 1  # gray stays gray
    save_image_grid(images[:, :4], tmp_path / "g.png")  # RGBA: shown as RGB
    with Image.open(tmp_path / "g.png") as pil:
        assert pil.mode == "RGB" and pil.size == (10, 8)
        assert np.array_equal(np.asarray(pil), grid)
