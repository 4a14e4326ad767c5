"""Testing helpers that ship with the product, as ``cupy.testing`` and
``torch.testing`` do: the GPU path checked on a machine without a GPU.

- :mod:`.cuda_host`: the exact CUDA source a kernel is compiled from, built
  with the host C++ compiler behind a small shim header
  (``cuda_host_shim.h``) and run on the CPU, one (block, thread) after
  another;
- :mod:`.cupy_standin`: a strict CuPy stand-in on NumPy (no implicit host
  copies; every launch, host read and upload counted) whose ``RawModule``
  runs kernels through :mod:`.cuda_host`.

The test suite and ``optbench bench --launches`` import them from here.
Nothing in this package is imported by the rest of ``optbench.kernels``.
"""
