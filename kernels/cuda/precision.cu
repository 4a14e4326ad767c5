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

// A (members, n) float32 state, rows ld elements apart, rounded in place to
// the nearest bf16 (mode 0) or stochastically (mode 1, member m's bits under
// key (keys[2m], keys[2m + 1]) at element k of its row): after a step, a
// state stored in bfloat16 holds exactly these values (decoding is exact).
extern "C" __global__ void optbench_round_state_bf16(
    float* __restrict__ x, const unsigned int* __restrict__ keys, const long long members,
    const long long n, const long long ld, const int mode, const unsigned int step, const unsigned int buffer)
{
    for (long long m = blockIdx.y; m < members; m += gridDim.y) {
        const unsigned long long seed = ((unsigned long long)keys[2 * m + 1] << 32) | keys[2 * m];
        float* row = x + m * ld;
        for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
             k += (long long)gridDim.x * blockDim.x) {
            const unsigned short h = mode == 0
                ? optbench_bf16_rne(row[k])
                : optbench_bf16_sr(row[k], optbench_sr_bits(seed, step, buffer, (unsigned long long)k));
            row[k] = optbench_bf16_to_f32(h);
        }
    }
}
