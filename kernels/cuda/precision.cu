// optbench: the bfloat16 rounding of bf16.cuh as kernels, for checking it
// against kernels/precision.py (NumPy and Numba) bit for bit. Each thread
// rounds one element; the bf16 bits are written to the low half of a 32-bit
// word. mode 0: round to nearest even; 1: stochastic, with the bits of
// (seed, step, buffer, offset + element).
#include "philox.cuh"
#include "bf16.cuh"

extern "C" __global__ void optbench_round_bf16(
    const float* __restrict__ x, unsigned int* __restrict__ out, const long long n, const int mode,
    const unsigned long long seed, const unsigned int step, const unsigned int buffer,
    const long long offset)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const unsigned short h = mode == 0
            ? optbench_bf16_rne(x[i])
            : optbench_bf16_sr(x[i], optbench_sr_bits(seed, step, buffer, (unsigned long long)(offset + i)));
        out[i] = (unsigned int)h;
    }
}
