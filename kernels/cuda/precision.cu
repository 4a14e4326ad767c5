// optbench: the rounding of a low-precision optimiser state, as kernels:
// bfloat16 (bf16.cuh), checked against kernels/precision.py (NumPy and
// Numba) bit for bit, and 8-bit block-wise codes (at the end). Each thread
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

// An optimiser state held as 8-bit block-wise codes (Dettmers et
// al., ICLR 2022): each block of `block` elements of a row replaced, in
// place, by the value its 8-bit code stands for -- code x the block's
// absolute maximum, the code the entry of the dynamic map nearest to
// element / absmax (a tie to the lower entry). The map is the signed one
// (codes[0 .. 255]) where the block holds a negative value, else the
// unsigned one (codes[256 .. 511]). A block holding a NaN or an infinity
// is left as it is (its member has diverged). kernels/precision.py holds
// the NumPy and Numba twins; the three agree bit for bit.
//
// One thread per (member, block): it reads its block twice, once for the
// absmax and once to quantise, with no shared memory, so the host harness
// runs it as the GPU does. (A warp per block, reducing with shuffles, would
// read the block once; at 2048 elements a block the state is small.)

// The index of the entry of a map nearest to v: `code` its 256 entries and
// +inf, `below` for each value of a float's high 16 bits the entries below
// the least float with those bits (kernels/precision.py: code_tables, which
// says why at most one entry lies in such a bucket). The entries below v --
// numpy.searchsorted's index, side "left" -- kept in 1 .. 255, or the one
// before it where that is strictly nearer.
__device__ __forceinline__ int optbench_nearest_code(const float* code, const unsigned short* below, const float v)
{
    int h = below[__float_as_uint(v) >> 16];
    h += code[h] < v ? 1 : 0;
    h = h < 1 ? 1 : (h > 255 ? 255 : h);
    return (code[h] - v) < (v - code[h - 1]) ? h : h - 1;
}

extern "C" __global__ void optbench_int8_roundtrip(
    float* __restrict__ x, const float* __restrict__ codes, const unsigned short* __restrict__ below,
    const long long members, const long long n, const long long ld, const long long block)
{
    const long long blocks = (n + block - 1) / block;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < members * blocks;
         k += (long long)gridDim.x * blockDim.x) {
        const long long m = k / blocks, lo = (k - m * blocks) * block;
        const long long hi = lo + block < n ? lo + block : n;
        float* row = x + m * ld;
        float amax = 0.0f;
        bool negative = false, finite = true;
        for (long long i = lo; i < hi; ++i) {
            const float v = row[i];
            finite = finite && isfinite(v);
            amax = fabsf(v) > amax ? fabsf(v) : amax;
            negative = negative || v < 0.0f;
        }
        if (!finite) continue;
        const int map = negative ? 0 : 1;  // the signed map, or the unsigned one
        const float* code = codes + map * 257;
        const unsigned short* bucket = below + map * 65536;
        const float scale = amax > 0.0f ? amax : 1.0f;
        for (long long i = lo; i < hi; ++i) row[i] = code[optbench_nearest_code(code, bucket, row[i] / scale)] * amax;
    }
}
