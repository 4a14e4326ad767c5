#pragma once
// optbench: bfloat16 as its 16 bits (unsigned short), rounded from float32
// to nearest (ties to even) or stochastically, with the random bits of
// Philox4x32-10 keyed by (seed, step, element, buffer) so that NumPy, Numba
// and CUDA round alike, bit for bit. kernels/precision.py holds the NumPy
// twins and says why each step is what it is. Needs philox.cuh.

// The random 16 bits that stochastic rounding adds below a bf16's last bit:
// Philox4x32-10 of counter (element / 4 as two words, step, 0x5352 << 16 | buffer)
// under key (seed's low word, seed's high word), word element % 4, its high half.
__device__ __forceinline__ unsigned int optbench_sr_bits(
    const unsigned long long seed, const unsigned int step, const unsigned int buffer,
    const unsigned long long element)
{
    const unsigned long long q = element >> 2;
    unsigned int r0, r1, r2, r3;
    optbench_philox4x32_10((unsigned int)(q & 0xFFFFFFFFull), (unsigned int)(q >> 32), step,
                           0x53520000u | (buffer & 0xFFFFu),
                           (unsigned int)(seed & 0xFFFFFFFFull), (unsigned int)(seed >> 32), r0, r1, r2, r3);
    const unsigned int j = (unsigned int)(element & 3ull);
    const unsigned int word = j == 0 ? r0 : (j == 1 ? r1 : (j == 2 ? r2 : r3));
    return word >> 16;
}

// float32 -> bf16 bits, round to nearest, ties to even; a NaN stays a (quiet) NaN.
__device__ __forceinline__ unsigned short optbench_bf16_rne(const float x)
{
    const unsigned int u = __float_as_uint(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((u >> 16) | 0x0040u);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// float32 -> bf16 bits, rounded up (in magnitude) with probability equal to the
// dropped fraction of the last bit: r16 uniform in [0, 2^16) added below it.
__device__ __forceinline__ unsigned short optbench_bf16_sr(const float x, const unsigned int r16)
{
    const unsigned int u = __float_as_uint(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((u >> 16) | 0x0040u);
    if ((u & 0x7FFFFFFFu) == 0x7F800000u) return (unsigned short)(u >> 16);  // an infinity stays itself
    return (unsigned short)((u + (r16 & 0xFFFFu)) >> 16);
}

__device__ __forceinline__ float optbench_bf16_to_f32(const unsigned short h)
{
    return __uint_as_float(((unsigned int)h) << 16);
}
