"""Low-precision state's rounding (kernels/precision.py, kernels/cuda/bf16.cuh;
issue 23, first part): round to nearest even is the nearest bf16, stochastic
rounding is unbiased where round to nearest keeps its error, NumPy, Numba and
the CUDA source give the same bits; 8-bit block-wise quantisation picks each
element's nearest code of the dynamic map under its block's absmax."""

import numpy as np
import pytest

from optbench.kernels import precision
from optbench.kernels.precision import (BLOCK, bf16_rne, bf16_sr_keyed, bf16_to_f32, dequantize_blockwise,
                                        dynamic_map, quantize_blockwise, sr_bits)


def samples(n=20000, seed=0) -> np.ndarray:
    """float32 values over every binade, subnormals, ties, the largest
    finite values, zeros, infinities and NaNs."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 2.0 ** rng.integers(-140, 127, n)).astype(np.float32)
    ties = (rng.integers(0, 1 << 16, 200).astype(np.uint32) << np.uint32(16)) | np.uint32(0x8000)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.4028235e38, -3.4028235e38, 1e-45,
                        1.17549435e-38, 1.0, -1.0], dtype=np.float32)
    return np.concatenate([x, ties.view(np.float32), (ties | np.uint32(0x10000)).view(np.float32), special])


def nearest(x: np.ndarray) -> np.ndarray:
    """The nearest bf16 by float64 distance, ties to the even one: computed
    from the two candidates, not by the bit trick under test."""
    u = x.view(np.uint32)
    lo = u & np.uint32(0xFFFF0000)                     # toward zero
    hi = lo + np.uint32(0x10000)                       # away from zero (inf's bits past the largest)
    vlo = lo.view(np.float32).astype(np.float64)
    exponent = np.maximum((u >> np.uint32(23)) & np.uint32(0xFF), 1).astype(np.float64)
    vhi = vlo + np.sign(x) * 2.0 ** (exponent - 127 - 7)  # the next bf16 as a number: 2^128 past the largest
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        dlo, dhi = np.abs(xd - vlo), np.abs(xd - vhi)
    tie = dlo == dhi
    pick_hi = (dhi < dlo) | (tie & (((lo >> np.uint32(16)) & np.uint32(1)) == 1))
    return np.where(pick_hi, hi >> np.uint32(16), lo >> np.uint32(16)).astype(np.uint16)


def test_round_to_nearest_even_is_the_nearest_bf16():
    x = samples()
    got = bf16_rne(x)
    finite = np.isfinite(x)
    assert np.array_equal(got[finite], nearest(x[finite]))
    ok = ~np.isnan(x)
    assert np.array_equal(bf16_rne(bf16_to_f32(got[ok])), got[ok])  # a bf16 decodes exactly and rounds to itself
    assert np.isnan(bf16_to_f32(got[np.isnan(x)])).all() and (got[np.isnan(x)] & 0x0040).all()
    assert bf16_to_f32(bf16_rne(np.float32([3.4028235e38])))[0] == np.inf  # past the largest bf16


def test_round_to_nearest_matches_torch_bfloat16():
    torch = pytest.importorskip("torch")
    x = samples(seed=1)
    ok = ~np.isnan(x)
    theirs = torch.from_numpy(x[ok]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(bf16_rne(x[ok]), theirs)


def test_stochastic_rounding_is_unbiased_where_rounding_to_nearest_keeps_its_error():
    ulp = 2.0 ** -7  # a bf16's last bit at 1.0
    x = np.float32(1.0 + 0.3 * ulp)
    draws = np.array([bf16_to_f32(bf16_sr_keyed(np.float32([x]), seed=7, step=t, buffer=0))[0]
                      for t in range(4000)], dtype=np.float64)
    draws = np.concatenate([draws, bf16_to_f32(bf16_sr_keyed(np.full(16000, x), seed=7, step=0, buffer=1))])
    assert set(np.unique(draws)) == {1.0, 1.0 + ulp}  # only the two neighbours
    sd = ulp * np.sqrt(0.3 * 0.7) / np.sqrt(draws.size)
    assert abs(draws.mean() - float(x)) < 4 * sd
    nearest_error = float(bf16_to_f32(bf16_rne(np.float32([x])))[0]) - float(x)
    assert -nearest_error == float(x) - 1.0 and abs(nearest_error) > 50 * sd  # down to 1.0, every time


def test_the_bits_depend_on_seed_step_buffer_and_element_alone():
    whole = sr_bits(1000, seed=2**40 + 5, step=9, buffer=3)
    parts = np.concatenate([sr_bits(333, seed=2**40 + 5, step=9, buffer=3, offset=o) for o in (0, 333, 666)]
                           + [sr_bits(1, seed=2**40 + 5, step=9, buffer=3, offset=999)])
    assert np.array_equal(whole, parts) and whole.max() < 1 << 16
    for change in ({"seed": 5}, {"step": 10}, {"buffer": 4}):
        other = sr_bits(1000, **{"seed": 2**40 + 5, "step": 9, "buffer": 3, **change})
        assert (other != whole).mean() > 0.99
    assert abs(whole.mean() / (1 << 16) - 0.5) < 0.05


@pytest.mark.parametrize("mode", [0, 1])
def test_numpy_numba_and_the_cuda_source_round_alike_bit_for_bit(standin, mode):
    cp = standin
    x = samples(n=1500, seed=2)
    seed, step, buffer, offset = 2**33 + 17, 41, 2, 5
    want = bf16_rne(x) if mode == 0 else bf16_sr_keyed(x, seed, step, buffer, offset)
    kernel = cp.RawModule(code=precision.cuda_source()).get_function("optbench_round_bf16")
    out = cp.zeros(x.size, dtype=np.uint32)
    kernel((8,), (64,), (cp.asarray(x), out, np.int64(x.size), np.int32(mode), np.uint64(seed), np.uint32(step),
                         np.uint32(buffer), np.int64(offset)))
    assert np.array_equal(out.get().astype(np.uint16), want)
    numba = precision.numba_functions()
    if numba is None:
        pytest.skip("Numba is not installed")
    got = np.empty(x.size, dtype=np.uint16)
    numba["round_array"](x, got, mode, seed, step, buffer, offset)
    assert np.array_equal(got, want)


# --- 8-bit block-wise state ---------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_the_dynamic_map_is_256_distinct_values_over_seven_decades(signed):
    code = dynamic_map(signed)
    assert code.dtype == np.float32 and len(np.unique(code)) == 256 and (np.diff(code) > 0).all()
    assert code[-1] == 1.0 and 0.0 in code and code[code > 0].min() < 1e-6
    if signed:
        assert np.array_equal(code[code < 0], -code[code > 0][:-1][::-1])  # symmetric but for 1.0
    else:
        assert (code >= 0).all()


@pytest.mark.parametrize("signed", [True, False])
def test_each_element_gets_its_nearest_code_and_its_block_its_absmax(signed):
    rng = np.random.default_rng(4)
    n = 3 * BLOCK + 100
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 0, n)).astype(np.float32)
    x = x if signed else np.abs(x)
    codes, absmax = quantize_blockwise(x, signed)
    assert codes.dtype == np.uint8 and codes.shape == (n,) and absmax.shape == (4,)
    blocks = np.pad(x, (0, 4 * BLOCK - n)).reshape(4, BLOCK)
    assert np.array_equal(absmax, np.abs(blocks).max(axis=1))
    code = dynamic_map(signed).astype(np.float64)
    normed = x.astype(np.float64) / np.repeat(absmax, BLOCK)[:n]
    err = np.abs(normed - code[codes])
    for step in (-1, 1):  # no neighbouring code is nearer
        other = np.clip(codes.astype(int) + step, 0, 255)
        assert (err <= np.abs(normed - code[other]) + 1e-7).all()
    back = dequantize_blockwise(codes, absmax, signed)
    top = np.abs(normed) >= 0.1  # the top decade: 64 (signed) or 128 (unsigned) steps over [0.1, 1]
    rel = np.abs(back[top] - x[top]) / np.abs(x[top])
    assert rel.max() <= (0.071 if signed else 0.036)


def test_blocks_are_quantised_independently_and_bad_state_is_refused():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(BLOCK).astype(np.float32), 1e-4 * rng.standard_normal(BLOCK).astype(np.float32)
    whole = quantize_blockwise(np.concatenate([a, b]))
    assert np.array_equal(whole[0], np.concatenate([quantize_blockwise(a)[0], quantize_blockwise(b)[0]]))
    zeros = quantize_blockwise(np.zeros(10, np.float32))
    assert np.array_equal(dequantize_blockwise(*zeros), np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="NaN or an infinity"):
        quantize_blockwise(np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="no negative"):
        quantize_blockwise(np.array([1.0, -1.0], np.float32), signed=False)


def test_an_8_bit_state_round_trip_is_the_quantiser_s_on_numpy_numba_and_the_cuda_source(standin):
    """Each block quantised with the signed map where it holds a negative
    value and the unsigned one where it does not, then decoded: the NumPy
    quantiser's values, bit for bit on every backend; a block holding a NaN
    is left alone (its member has diverged), a block of zeros stays zero."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 2 * BLOCK + 300)) * 10.0 ** rng.uniform(-8, 1, (3, 2 * BLOCK + 300))).astype(np.float32)
    x[1] = np.abs(x[1])
    x[2, BLOCK + 5] = np.nan
    x[0, 2 * BLOCK:] = 0.0
    want = x.copy()
    precision.round_state(want, "int8", None, 0, 0, "numpy")
    for m, signed in ((0, True), (1, False)):
        codes, absmax = quantize_blockwise(x[m], signed)
        assert np.array_equal(want[m], dequantize_blockwise(codes, absmax, signed))
    assert not want[0, 2 * BLOCK:].any() and not np.signbit(want[0, 2 * BLOCK:]).any()
    assert np.array_equal(want[2, BLOCK:2 * BLOCK], x[2, BLOCK:2 * BLOCK], equal_nan=True)
    assert not np.array_equal(want[2, :BLOCK], x[2, :BLOCK])
    dev = standin.asarray(x)
    precision.round_state(dev, "int8", None, 0, 0, "cupy")
    assert np.array_equal(dev.get(), want, equal_nan=True)
    if precision.numba_functions() is None:
        pytest.skip("Numba is not installed")
    got = x.copy()
    precision.round_state(got, "int8", None, 0, 0, "numba")
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("signed", [True, False])
def test_the_quantisers_look_up_numpy_s_nearest_code_at_every_boundary(standin, signed):
    """The Numba and CUDA quantisers find a code through a table of the
    float's high 16 bits (kernels/precision.py: code_tables) where NumPy
    searches: every code, every midpoint between two (a tie takes the lower
    code) and the floats either side of each, in blocks whose maximum is 1,
    so each element is quantised as it is."""
    code = dynamic_map(signed)
    mids = ((code[1:].astype(np.float64) + code[:-1]) / 2).astype(np.float32)
    edges = np.concatenate([code, mids, *(np.nextafter(a, t) for a in (code, mids) for t in (-np.inf, np.inf)),
                            np.float32([0.0, -0.0, 1e-45, -1e-45, 1e-38])])
    edges = edges[(np.abs(edges) < 1) & ((edges >= 0) | signed)]
    x = np.resize(edges, (3, BLOCK)).astype(np.float32)
    x[:, 0] = 1.0  # each block's maximum: element / absmax is the element itself
    if signed:
        x[:, 1] = -0.5  # a negative value: the signed map
    want = x.copy()
    precision.round_state(want, "int8", None, 0, 0, "numpy")
    dev = standin.asarray(x)
    precision.round_state(dev, "int8", None, 0, 0, "cupy")
    assert np.array_equal(dev.get(), want)
    if precision.numba_functions() is None:
        pytest.skip("Numba is not installed")
    got = x.copy()
    precision.round_state(got, "int8", None, 0, 0, "numba")
    assert np.array_equal(got, want)
