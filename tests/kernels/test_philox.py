"""Philox4x32-10: the NumPy generator and its CUDA C text against the published answers."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from optbench.kernels import philox

# Known-answer vectors published with Random123 (Salmon et al. 2011), copied
# from shared/data/philox4x32_10_kat.json: (counter c0..c3, key k0 k1, output).
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def reference_philox(counter, key):
    """Philox4x32-10 on Python ints, written straight from the paper:
    an implementation independent of the vectorised one under test."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    mask = 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def random_inputs(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    counters = rng.integers(0, 1 << 32, size=(n, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 1 << 32, size=(n, 2), dtype=np.uint64).astype(np.uint32)
    counters[:4] = [[0, 0, 0, 0], [0xFFFFFFFF] * 4, [1, 0, 0, 0], [0, 0, 0, 1]]  # edges
    return counters, keys


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_numpy_matches_known_answers(counter, key, expected):
    out = philox.philox4x32_10(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert out.dtype == np.uint32 and out.shape == (4,)
    assert [hex(w) for w in out] == [hex(w) for w in expected]


def test_reference_matches_known_answers():
    for counter, key, expected in KAT:
        assert reference_philox(counter, key) == expected


def test_numpy_batch_matches_known_answers_and_reference():
    counters, keys = random_inputs(300)
    counters = np.concatenate([np.array([c for c, _, _ in KAT], np.uint32), counters])
    keys = np.concatenate([np.array([k for _, k, _ in KAT], np.uint32), keys])
    out = philox.philox4x32_10(counters, keys)
    assert out.shape == (len(counters), 4)
    for i, (_, _, expected) in enumerate(KAT):
        assert tuple(int(w) for w in out[i]) == expected
    for c, k, o in zip(counters, keys, out):
        assert tuple(int(w) for w in o) == reference_philox(tuple(map(int, c)), tuple(map(int, k)))


def test_broadcasting_one_key_many_counters():
    counters, _ = random_inputs(24)
    key = np.array([0xA4093822, 0x299F31D0], np.uint32)
    grid = counters.reshape(2, 3, 4, 4)
    out = philox.philox4x32_10(grid, key)
    assert out.shape == (2, 3, 4, 4)
    for idx in np.ndindex(2, 3, 4):
        assert np.array_equal(out[idx], philox.philox4x32_10(grid[idx], key))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="uint32"):
        philox.philox4x32_10(np.zeros(4, np.int64), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="4 words"):
        philox.philox4x32_10(np.zeros(3, np.uint32), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="2 words"):
        philox.philox4x32_10(np.zeros(4, np.uint32), np.zeros((5, 3), np.uint32))


def test_cuda_source_is_self_contained():
    src = philox.cuda_source()
    assert "#include" not in src
    assert "__host__ __device__ __forceinline__ void optbench_philox4x32_10(" in src
    assert "__umulhi" in src  # the device's mulhi
    assert "unsigned long long" in src and "uint32_t" not in src


# ---------------------------------------------------------------- the C text

# One thread per (counter, key) row: the wrapper the host and device tests
# launch around optbench_philox4x32_10.
_KAT_KERNEL = """
extern "C" __global__ void philox_batch(const unsigned int* ctr, const unsigned int* key,
                                        unsigned int* out, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        optbench_philox4x32_10(ctr[4*i], ctr[4*i+1], ctr[4*i+2], ctr[4*i+3],
                               key[2*i], key[2*i+1],
                               out[4*i], out[4*i+1], out[4*i+2], out[4*i+3]);
}
"""
KAT_SPEC = [("u32*", "ctr"), ("u32*", "key"), ("u32*", "out"), ("i64", "n")]


@pytest.fixture(scope="module")
def host_philox(host_compiler):
    """The CUDA C Philox built for the CPU by cuda_host.py (g++ behind its
    shim, where __CUDA_ARCH__ is undefined: the 64-bit-product mulhi)."""
    fn = host_compiler.module(philox.cuda_source() + _KAT_KERNEL, {"philox_batch": KAT_SPEC}).get_function("philox_batch")

    def run(counters: np.ndarray, keys: np.ndarray) -> np.ndarray:
        counters = np.ascontiguousarray(counters, np.uint32)
        keys = np.ascontiguousarray(keys, np.uint32)
        out = np.zeros_like(counters)
        fn((-(-len(counters) // 64),), (64,), (counters, keys, out, len(counters)))
        return out

    return run


def test_cuda_text_on_host_matches_known_answers(host_philox):
    out = host_philox(np.array([c for c, _, _ in KAT], np.uint32),
                      np.array([k for _, k, _ in KAT], np.uint32))
    assert [tuple(int(w) for w in row) for row in out] == [e for _, _, e in KAT]


def test_cuda_text_on_host_matches_numpy(host_philox):
    counters, keys = random_inputs(5000, seed=7)
    assert np.array_equal(host_philox(counters, keys), philox.philox4x32_10(counters, keys))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_text_compiles_with_nvcc(arch, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: cannot compile the CUDA source")
    src = tmp_path / "philox.cu"
    src.write_text(philox.cuda_source() + _KAT_KERNEL)
    res = subprocess.run(["nvcc", "-cubin", f"-arch={arch}", "-Xptxas", "-v", str(src),
                          "-o", str(tmp_path / "philox.cubin")], capture_output=True, text=True)
    print(f"nvcc -arch={arch}:\n{res.stdout}{res.stderr}")
    assert res.returncode == 0, res.stderr
    assert "0 bytes spill stores" in res.stderr


@pytest.mark.gpu
def test_device_philox_matches_known_answers_and_numpy(cp):
    counters, keys = random_inputs(10000, seed=3)
    counters[:3] = [c for c, _, _ in KAT]
    keys[:3] = [k for _, k, _ in KAT]
    fn = cp.RawModule(code=philox.cuda_source() + _KAT_KERNEL).get_function("philox_batch")
    dc, dk = cp.asarray(counters), cp.asarray(keys)
    out = cp.zeros_like(dc)
    n = len(counters)
    fn(((n + 255) // 256,), (256,), (dc, dk, out, np.int64(n)))
    got = cp.asnumpy(out)
    assert [tuple(int(w) for w in row) for row in got[:3]] == [e for _, _, e in KAT]
    assert np.array_equal(got, philox.philox4x32_10(counters, keys))
