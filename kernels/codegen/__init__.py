"""Code generators: a rule's update text compiled for each backend.

- :mod:`.expr`: the expression printer the CUDA and Numba generators share;
- :mod:`.numpy_kernel`: in-place ufunc calls over cache-sized chunks, with
  scalars that are 0 or 1 in a step folded out;
- :mod:`.cuda_kernel`: a ``__host__ __device__`` element function and two
  grid-stride kernels (float4 and scalar), compiled by CuPy on first use;
- :mod:`.numba_kernel`: one parallel loop per rule, JIT-compiled.

Each also has a population form (``population``): P members' (P, n)
buffers updated at once, a row per member with its own scalars, each row bit
for bit what the single-run form makes of it (:mod:`kernels.population`).
Each takes a state precision too (:mod:`kernels.precision`): with "bf16" or
"bf16-sr" the rule's state buffers are uint16 bits, loaded exactly and
stored rounded around the same update text.
"""
