"""Every CUDA source the project generates compiles with nvcc for sm_80 and sm_90.

The machines here have nvcc but no GPU, so this is what catches a syntax or
type error in a generated kernel before it reaches a GPU. ptxas' register and
spill report is kept in pytest's cache (.pytest_cache/d/ptxas/<source>.txt)
and no kernel may spill.
"""

import re
import shutil
import subprocess

import pytest

from optbench.kernels.testing.sources import cuda_sources

NVCC = shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))
ARCHS = ("80", "90")
SOURCES = cuda_sources()


@pytest.fixture(scope="session")
def ptxas_dir(request):
    return request.config.cache.mkdir("ptxas")


@pytest.mark.parametrize("name", SOURCES)
def test_source_compiles_with_nvcc(name, tmp_path, ptxas_dir):
    if NVCC is None:
        pytest.skip("nvcc not found on PATH: the CUDA sources were not compiled")
    src = tmp_path / f"{name}.cu"
    src.write_text(SOURCES[name])
    cmd = [NVCC, "-fatbin", "-Xptxas", "-v", "-o", str(tmp_path / f"{name}.fatbin"), str(src)]
    for arch in ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    (ptxas_dir / f"{name}.txt").write_text(report)
    assert proc.returncode == 0, f"nvcc failed on {name}:\n{report}"
    for arch in ARCHS:
        assert f"for 'sm_{arch}'" in report, f"no sm_{arch} code built for {name}"
    spills = [int(b) for b in re.findall(r"(\d+) bytes spill stores", report)]
    assert spills and max(spills) == 0, f"{name} spills registers:\n{report}"
    print(report)


@pytest.mark.parametrize("name", ["dropout.cu", "precision.cu"])
def test_shipped_cuda_file_compiles_as_a_file(name, tmp_path):
    """The hand-written sources are real CUDA files: nvcc builds dropout.cu (and precision.cu)
    from the package folder with its #include resolved by the include path,
    as an editor or a build would (not only the expanded string CuPy gets)."""
    if NVCC is None:
        pytest.skip("nvcc not found on PATH: the CUDA sources were not compiled")
    from importlib import resources

    folder = resources.files("optbench.kernels") / "cuda"
    cmd = [NVCC, "-c", "-I", str(folder), "-o", str(tmp_path / "out.o"), str(folder / name),
           "-gencode", "arch=compute_90,code=sm_90"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
