"""Figures: a theme that holds only inside its block, and atomic saving."""

import stat

import matplotlib

from optbench.suite.reporting.figures import new_figure, save_figure, themed
from optbench.suite.reporting.files import current_umask


def test_themed_changes_nothing_outside_its_block(tmp_path):
    before = dict(matplotlib.rcParams)
    with themed(style="darkgrid", font_scale=2.0):
        inside = dict(matplotlib.rcParams)
        fig, axes = new_figure(1, 2, (4, 2))
        axes[0, 0].plot([0, 1], [0, 1])
        save_figure(fig, tmp_path / "a.png")
    assert inside["axes.facecolor"] != before["axes.facecolor"]
    assert inside["font.size"] != before["font.size"]
    assert dict(matplotlib.rcParams) == before  # nothing leaked into later figures


def test_themed_works_as_a_decorator_more_than_once(tmp_path):
    @themed(style="whitegrid")
    def draw(name):
        fig, axes = new_figure()
        axes[0, 0].bar([0, 1], [1, 2])
        return save_figure(fig, tmp_path / name)

    before = dict(matplotlib.rcParams)
    assert draw("a.png").stat().st_size > 1000 and draw("b.png").stat().st_size > 1000
    assert dict(matplotlib.rcParams) == before


def test_save_figure_is_a_png_with_a_shared_mode(tmp_path):
    fig, axes = new_figure()
    path = save_figure(fig, tmp_path / "deep" / "f.png", tight=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]
