"""The Numba path: generated from the same rule text, equal to the NumPy path.

The generated source is checked without Numba (it is plain Python: run with
``range`` and NumPy float32 scalars it must compute what the NumPy path
computes); the compiled loops only where Numba is installed. The rule tests
against the float64 reference run on numba through the ``backend`` fixture
(tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from optbench.kernels import BackendUnavailable, Optimizer, get_backend
from optbench.kernels.codegen.numba_kernel import NumbaKernel, namespace as numba_namespace, population_source
from optbench.kernels.codegen.numpy_kernel import NumpyKernel
from optbench.kernels.transforms import masked
from optbench.kernels.rules import RULES
from rule_sets import ELEMENTWISE  # tests/ is on sys.path (the staged rules: test_staged.py)

HYPER = {"l2": 0.03, "wd": 0.02}


def _numba():
    try:
        return get_backend("numba")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


def _run(kernel, rule, n, steps=3, seed=0, mask=None, members=1):
    """``steps`` updates of ``members`` runs of ``n`` elements through
    ``kernel.population``; each member has its own lr."""
    rng = np.random.default_rng(seed)
    bufs = {"w": rng.standard_normal((members, n), dtype=np.float32),
            **{s: np.zeros((members, n), np.float32) for s in rule.state}}
    if mask is not None:
        bufs["mask"] = np.tile(mask, (members, 1))
    hps = [rule.resolve({**HYPER, "lr": rule.hyper["lr"] * (m + 1)}) for m in range(members)]
    active = np.ones(members, np.int32)
    for t in range(1, steps + 1):
        bufs["g"] = rng.standard_normal((members, n), dtype=np.float32)
        table = np.array([[rule.step_scalars(hp, t)[s] for s in rule.scalar_names] for hp in hps], np.float32)
        kernel.population(bufs, table, active)
    return {b: bufs[b] for b in rule.written}


def test_source_is_one_loop_over_the_rule_text():
    src = population_source(RULES["adam"], parallel=True)
    assert "def adam_numba_parallel(a_w, a_g, a_mu, a_v, a_active, a_scalars):" in src
    assert src.count("for _k in _range(a_w.shape[0] * _blocks):") == 1
    assert src.count("for _i in range(r_w.shape[0]):") == 1
    for st in RULES["adam"].statements:  # every statement, in the rule's order
        assert f"                {st.target} = " in src
    assert src.index("r_mu[_i] = mu") > src.index("w = (w - ")  # stores after the update
    masked_src = population_source(masked(RULES["sgd"]), parallel=False)
    assert "r_mask" in masked_src and "r_mask[_i] =" not in masked_src  # the mask is read-only


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_generated_source_as_plain_python_equals_the_numpy_path(name):
    """Without Numba: exec the generated loop with range and float32 scalars."""
    rule = RULES[name]
    namespace = numba_namespace(parallel=False, jit=False)
    exec(population_source(rule, parallel=False), namespace)
    fn = namespace[f"{name}_numba_serial"]

    class Plain:
        @staticmethod
        def population(bufs, table, active):
            fn(*(bufs[b] for b in rule.buffers), active, table)

    got, want = _run(Plain, rule, 67, members=2), _run(NumpyKernel(rule, fold=False), rule, 67, members=2)
    for b in rule.written:
        np.testing.assert_array_equal(got[b], want[b], err_msg=f"{name}: buffer {b}")


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_numba_equals_numpy_bit_for_bit(name):
    """Float32 throughout and no fast-math: the same IEEE operations in the
    same order as the NumPy path, so the results are identical."""
    _numba()
    rule = RULES[name]
    got = _run(NumbaKernel(rule), rule, 1031, members=3)
    want = _run(NumpyKernel(rule), rule, 1031, members=3)
    for b in rule.written:
        np.testing.assert_array_equal(got[b], want[b], err_msg=f"{name}: buffer {b}")


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_parallel_build_equals_serial_build(name, members, monkeypatch):
    """The prange build (used from PARALLEL_MIN elements) computes exactly what
    the serial one does, one row split into blocks between the threads or
    several rows; a masked variant takes the extra read-only input."""
    _numba()
    from optbench.kernels.codegen import numba_kernel

    rule = masked(RULES[name]) if name == "sgd" else RULES[name]
    n = 3 * numba_kernel.BLOCK + 4099  # four blocks of a row, the last one short
    mask = (np.random.default_rng(5).random(n) > 0.3).astype(np.float32) if name == "sgd" else None
    serial = _run(NumbaKernel(rule, parallel_min=1 << 40), rule, n, mask=mask, members=members)
    monkeypatch.setattr(numba_kernel, "POPULATION_PARALLEL_MIN", 0)
    parallel = _run(NumbaKernel(rule, parallel_min=0), rule, n, mask=mask, members=members)
    for b in rule.written:
        np.testing.assert_array_equal(parallel[b], serial[b])
    if mask is not None:
        assert np.all(parallel["w"][:, mask == 0] == 0)


def test_optimizer_runs_numba_kernels_when_asked():
    _numba()
    w = np.ones(8, np.float32)
    opt = Optimizer("adam", w, backend="numba", lr=0.5)
    assert opt.backend == "numba" and isinstance(opt.kernel, NumbaKernel)
    opt.step(np.ones(8, np.float32))
    np.testing.assert_allclose(w, 0.5, rtol=1e-6)  # Adam's first step: -lr * sign(g)
    opt.set_mask(np.array([1, 0] * 4, np.float32))
    assert isinstance(opt.kernel, NumbaKernel) and opt.kernel.rule.name == "adam_masked"
    assert isinstance(Optimizer("adam", w).kernel, NumpyKernel)  # the default stays numpy


def test_backend_must_fit_the_arrays():
    with pytest.raises(TypeError, match="backend 'cupy' cannot update numpy arrays.*'numpy' or 'numba'"):
        Optimizer("sgd", np.zeros(4, np.float32), backend="cupy")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        Optimizer("sgd", np.zeros(4, np.float32), backend="tpu")


def test_numba_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes "import numba" fail
    with pytest.raises(BackendUnavailable, match=r"needs Numba.*pip install numba.*--backend numpy"):
        get_backend("numba")
    with pytest.raises(BackendUnavailable, match="needs Numba"):
        Optimizer("sgd", np.zeros(4, np.float32), backend="numba")
    assert get_backend("auto").name == "numpy"  # auto never picks numba


def test_kernels_import_without_numba():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import optbench.kernels as kernels, numpy as np\n"
            "from optbench.kernels.codegen.numba_kernel import NumbaKernel, namespace as numba_namespace, population_source\n"
            "o = kernels.Optimizer('adam', np.zeros(4, np.float32)); o.step(np.ones(4, np.float32))\n"
            "print(population_source(kernels.RULES['sgd'])[:10])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# optbench")


def test_validate_catches_a_wrong_numba_kernel(monkeypatch):
    """validate on numba really runs the numba kernels: break their generator
    (+ becomes -) and the check fails."""
    from optbench.kernels import launch
    from optbench.kernels.codegen import expr
    from optbench.kernels.validate import check_rule

    backend = _numba()
    assert check_rule("sgd", "coupled", 1025, backend).ok
    monkeypatch.setattr(launch, "_KERNELS", {})  # fresh kernels, compiled from the broken source
    monkeypatch.setitem(expr.OPERATORS, __import__("ast").Add, "-")
    bad = check_rule("sgd", "coupled", 1025, backend)
    assert not bad.ok and bad.backend == "numba"


def test_compile_rule_rejects_reserved_names():
    from optbench.kernels.rule import Rule

    # the loops' own names start with _, which the rule language refuses
    with pytest.raises(ValueError, match="reserved for generated code"):
        Rule(name="odd", title="odd", hyper={"_i": 0.1}, symbols={}, state=(),
             scalars=lambda hp, t: {"_i": hp["_i"]}, update="w = w - _i * g", bytes_per_param=12)
    # the arrays' names (a_w, r_w, ...) are the numba path's own check
    rule = Rule(name="odd", title="odd", hyper={"a_w": 0.1}, symbols={}, state=(),
                scalars=lambda hp, t: {"a_w": hp["a_w"]}, update="w = w - a_w * g", bytes_per_param=12)
    with pytest.raises(ValueError, match="reserved by the numba path"):
        population_source(rule)


def test_cpu_state_buffers_are_cache_line_aligned():
    from optbench.kernels.launch import aligned_zeros

    for n in (1, 7, 1 << 20):
        a = aligned_zeros(n)
        assert a.shape == (n,) and a.dtype == np.float32 and a.ctypes.data % 64 == 0 and not a.any()
    opt = Optimizer("adam", np.ones(1 << 20, np.float32))
    assert all(s.ctypes.data % 64 == 0 and s.flags.c_contiguous for s in opt.state.values())


def test_a_second_process_loads_the_compiled_rule_from_the_disk_cache(tmp_path):
    """The first process compiles and writes the cache; the second one loads
    the machine code (a cache hit, no miss) instead of compiling again."""
    pytest.importorskip("numba")
    code = ("import numpy as np\n"
            "from optbench.kernels import Optimizer\n"
            "o = Optimizer('rmsprop', np.zeros(16, np.float32), backend='numba')\n"
            "o.step(np.ones(16, np.float32))\n"
            "s = o.kernel.function(False).stats\n"
            "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()), float(o.params[0]))\n")
    env = {**os.environ, "OPTBENCH_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    hits1, misses1, w1 = first.stdout.split()
    hits2, misses2, w2 = second.stdout.split()
    assert (hits1, misses1) == ("0", "1") and (hits2, misses2) == ("1", "0") and w1 == w2
    assert list((tmp_path / "numba").glob("rmsprop_numba_serial_*.py"))
