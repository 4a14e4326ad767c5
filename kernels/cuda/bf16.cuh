#pragma once
// optbench: bfloat16 as its 16 bits (unsigned short), rounded from float32
// to nearest (ties to even) or stochastically, with the random bits of
// Philox4x32-10 keyed by (seed, step, element, buffer) so that NumPy, Numba
// and CUDA round alike, bit for bit. kernels/precision.py holds the NumPy
// twins and says why each step is what it is. Needs philox.cuh.

// The four random words of elements 4q .. 4q + 3 of a buffer at a step:
// Philox4x32-10 of counter (q as two words, step, 0x5352 << 16 | buffer) under
// key (seed's low word, seed's high word); element 4q + j takes word j.
__device__ __forceinline__ void optbench_sr_words(
    const unsigned long long seed, const unsigned int step, const unsigned int buffer, const unsigned long long q,
    unsigned int& r0, unsigned int& r1, unsigned int& r2, unsigned int& r3)
{
    optbench_philox4x32_10((unsigned int)(q & 0xFFFFFFFFull), (unsigned int)(q >> 32), step,
                           0x53520000u | (buffer & 0xFFFFu),
                           (unsigned int)(seed & 0xFFFFFFFFull), (unsigned int)(seed >> 32), r0, r1, r2, r3);
}

// The random 16 bits that stochastic rounding adds below a bf16's last bit:
// the high half of the element's word.
__device__ __forceinline__ unsigned int optbench_sr_bits(
    const unsigned long long seed, const unsigned int step, const unsigned int buffer,
    const unsigned long long element)
{
    unsigned int r0, r1, r2, r3;
    optbench_sr_words(seed, step, buffer, element >> 2, r0, r1, r2, r3);
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

// Four elements of a bf16 state at once, for the vec4 kernels' 8-byte loads
// and stores (elements e0 .. e0 + 3 of a row, for the stochastic bits).
__device__ __forceinline__ float4 optbench_bf16x4_load(const ushort4 h)
{
    return make_float4(optbench_bf16_to_f32(h.x), optbench_bf16_to_f32(h.y), optbench_bf16_to_f32(h.z),
                       optbench_bf16_to_f32(h.w));
}

__device__ __forceinline__ ushort4 optbench_bf16x4_rne(const float4 v)
{
    ushort4 h;
    h.x = optbench_bf16_rne(v.x);
    h.y = optbench_bf16_rne(v.y);
    h.z = optbench_bf16_rne(v.z);
    h.w = optbench_bf16_rne(v.w);
    return h;
}

// Elements e0 .. e0 + 3 with e0 % 4 == 0: one Philox call gives their four
// words, each element its own, as optbench_sr_bits would give it.
__device__ __forceinline__ ushort4 optbench_bf16x4_sr(
    const float4 v, const unsigned long long seed, const unsigned int step, const unsigned int buffer,
    const unsigned long long e0)
{
    unsigned int r0, r1, r2, r3;
    optbench_sr_words(seed, step, buffer, e0 >> 2, r0, r1, r2, r3);
    ushort4 h;
    h.x = optbench_bf16_sr(v.x, r0 >> 16);
    h.y = optbench_bf16_sr(v.y, r1 >> 16);
    h.z = optbench_bf16_sr(v.z, r2 >> 16);
    h.w = optbench_bf16_sr(v.w, r3 >> 16);
    return h;
}
