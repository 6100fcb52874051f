"""The run's plots: a loss chart with a single tick still shows its points."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from projected_gan.loggers import JsonlLogger, RunInfo
from projected_gan.loggers.plots import loss_figure


@pytest.mark.parametrize("n", [1, 3])
def test_few_ticks_are_drawn_as_visible_points(n):
    records = [
        {"kimg": 0.008 * (i + 1), "loss_g": 2.0 + 0.01 * i, "loss_d": -1.5 - 0.01 * i}
        for i in range(n)
    ]
    fig = loss_figure(records)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    height = pixels.shape[0]
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    for line in ax.lines:
        want = np.array(to_rgba(line.get_color())[:3]) * 255
        for x, y in zip(*line.get_data()):
            px, py = ax.transData.transform((x, y))
            row, col = int(round(height - py)), int(round(px))
            patch = pixels[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3)
            # The data point itself is painted in the line's colour (not background or grid).
            assert np.abs(patch - want).max(axis=1).min() < 40, (line.get_label(), x, y)


def test_logger_writes_the_loss_plot_after_one_tick(tmp_path):
    logger = JsonlLogger()
    logger.start(RunInfo(tmp_path, {}))
    logger.log_scalars({"tick": 0, "kimg": 0.008, "loss_g": 1.0, "loss_d": 0.5}, 8)
    logger.finish()
    assert (tmp_path / "plots" / "losses.png").stat().st_size > 0
