"""Flat buffers: layout, alignment, views that write through, padding."""

import numpy as np
import pytest

from optbench.kernels import RULES, FlatLayout, Optimizer
from optbench.kernels.flat import FlatBuffer

SHAPES = [("W1", (64, 127)), ("b1", (127,)), ("alpha1", (1,)), ("W2", (127, 10)), ("b2", (10,))]


def test_offsets_are_16_byte_aligned_and_disjoint():
    layout = FlatLayout(SHAPES)
    end = 0
    for slot in layout:
        assert slot.offset * 4 % 16 == 0
        assert slot.offset >= end
        end = slot.offset + slot.size
    assert layout.size >= end and layout.size % 4 == 0


def test_views_write_through_and_keep_their_shape():
    buf = FlatLayout(SHAPES).allocate()
    buf["W2"][3, 4] = 7.0
    slot = buf.layout["W2"]
    assert buf.data[slot.offset + 3 * 10 + 4] == 7.0
    assert buf["b1"].shape == (127,)
    assert np.shares_memory(buf["W1"], buf.data)
    assert buf["W1"].ctypes.data % 16 == buf.data.ctypes.data % 16


def test_gradient_buffer_has_the_same_layout():
    params = FlatLayout(SHAPES).allocate()
    grads = params.like()
    assert grads.layout == params.layout and grads.data.shape == params.data.shape
    assert not np.shares_memory(grads.data, params.data)


@pytest.mark.parametrize("name", RULES)
def test_padding_stays_zero_under_every_rule(name):
    params = FlatLayout(SHAPES).allocate()
    grads = params.like()
    rng = np.random.default_rng(0)
    opt = Optimizer(name, params, l2=0.1, wd=0.1)
    used = np.zeros(params.layout.size, bool)
    for s in params.layout:
        used[s.offset : s.offset + s.size] = True
    for _ in range(5):
        for s in params.layout:
            params[s.name][...] += rng.standard_normal(s.shape).astype(np.float32) * 0.01
            grads[s.name][...] = rng.standard_normal(s.shape)
        opt.step(grads)
    assert np.all(params.data[~used] == 0.0)
    assert np.any(params.data[used] != 0.0)


def test_bad_layouts_and_buffers():
    with pytest.raises(ValueError, match="appears twice"):
        FlatLayout([("W", (2, 2)), ("W", (3,))])
    with pytest.raises(ValueError, match="negative"):
        FlatLayout([("W", (2, -1))])
    layout = FlatLayout([("W", (2, 2))])
    with pytest.raises(TypeError, match="float32"):
        FlatBuffer(layout, np.zeros(layout.size, np.int32))
    with pytest.raises(ValueError, match="1-D array of 4 elements"):
        FlatBuffer(layout, np.zeros(5, np.float32))
    with pytest.raises(KeyError, match="no tensor 'b'"):
        layout.allocate()["b"]
