"""Sample grids: the layout for a count and an aspect, and where each image lands."""

from __future__ import annotations

import pytest
import torch

from projected_gan.images import grid_shape, make_grid


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
