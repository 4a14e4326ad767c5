// optbench: dropout kernels (kernels/dropout.py launches them; see its docstring
// for the mask addressing). Grid-stride loops, no shared memory, no block
// synchronisation: kernels/testing/cuda_host.py runs every (block, thread) in turn on the CPU.
#include "philox.cuh"

// One dropout element: x * (xi ? scale : 0) with xi = [draw >= threshold],
// P(xi = 0) = threshold / 2^32. A product, not a select, so NaN/Inf in x
// propagate exactly as in the NumPy path. threshold is 64-bit so that
// p = 1 (threshold 2^32) drops every element.
__host__ __device__ __forceinline__ float optbench_dropout_element(
    const float x, const unsigned int draw,
    const unsigned long long threshold, const float scale)
{
    return x * ((unsigned long long)draw >= threshold ? scale : 0.0f);
}

// The four draws of Philox block q (stream positions 4q .. 4q+3) under key
// (key0, key1): counter (q mod 2^32, q >> 32, 0, 0).
__host__ __device__ __forceinline__ void optbench_dropout_block(
    const unsigned long long q, const unsigned int key0, const unsigned int key1,
    unsigned int& d0, unsigned int& d1, unsigned int& d2, unsigned int& d3)
{
    optbench_philox4x32_10((unsigned int)q, (unsigned int)(q >> 32), 0u, 0u,
                           key0, key1, d0, d1, d2, d3);
}

// Word j (0..3) of a block, without a runtime-indexed array (which would
// live in local memory).
__host__ __device__ __forceinline__ unsigned int optbench_dropout_word(
    const unsigned int d0, const unsigned int d1, const unsigned int d2,
    const unsigned int d3, const unsigned int j)
{
    return j == 0u ? d0 : (j == 1u ? d1 : (j == 2u ? d2 : d3));
}

// Element h of the call is stream position e = offset + h, draw = word
// (e & 3) of block e >> 2. x and y may be the same buffer (in place), so
// they are not __restrict__: every element is read once, then written once,
// by the same thread.

// x, y 16-byte aligned and offset % 4 == 0: float4 group k is exactly Philox
// block (offset >> 2) + k, one generator call per 4 elements. Then the 0-3
// tail elements, all in the block after the last full group. One thread's
// share (work items tid, tid + stride, ...) of one call.
__host__ __device__ __forceinline__ void optbench_dropout_vec4_loop(
    const float* x, float* y, const long long n, const unsigned long long offset,
    const unsigned int key0, const unsigned int key1,
    const unsigned long long threshold, const float scale,
    const long long tid, const long long stride)
{
    const long long n4 = n >> 2;
    const unsigned long long q0 = offset >> 2;
    for (long long k = tid; k < n4; k += stride) {
        unsigned int d0, d1, d2, d3;
        optbench_dropout_block(q0 + (unsigned long long)k, key0, key1, d0, d1, d2, d3);
        float4 v = reinterpret_cast<const float4*>(x)[k];
        v.x = optbench_dropout_element(v.x, d0, threshold, scale);
        v.y = optbench_dropout_element(v.y, d1, threshold, scale);
        v.z = optbench_dropout_element(v.z, d2, threshold, scale);
        v.w = optbench_dropout_element(v.w, d3, threshold, scale);
        reinterpret_cast<float4*>(y)[k] = v;
    }
    for (long long h = (n4 << 2) + tid; h < n; h += stride) {
        unsigned int d0, d1, d2, d3;
        optbench_dropout_block(q0 + (unsigned long long)n4, key0, key1, d0, d1, d2, d3);
        const unsigned int draw = optbench_dropout_word(d0, d1, d2, d3, (unsigned int)(h & 3));
        y[h] = optbench_dropout_element(x[h], draw, threshold, scale);
    }
}

// Any alignment, any offset: work item g is Philox block (offset >> 2) + g,
// and it handles the (up to 4) elements of the call that fall in that block
// with scalar loads. Element index of word j of block q: h = 4q + j - offset,
// computed mod 2^64 so that positions before the call wrap to huge values
// and fail h < n. One thread's share of one call.
__host__ __device__ __forceinline__ void optbench_dropout_scalar_loop(
    const float* x, float* y, const long long n, const unsigned long long offset,
    const unsigned int key0, const unsigned int key1,
    const unsigned long long threshold, const float scale,
    const long long tid, const long long stride)
{
    if (n <= 0) return;
    const unsigned long long q0 = offset >> 2;
    const long long blocks = (long long)(((offset + (unsigned long long)n - 1ull) >> 2) - q0) + 1;
    for (long long g = tid; g < blocks; g += stride) {
        const unsigned long long q = q0 + (unsigned long long)g;
        unsigned int d[4];
        optbench_dropout_block(q, key0, key1, d[0], d[1], d[2], d[3]);
        const unsigned long long h0 = (q << 2) - offset;
#pragma unroll
        for (unsigned int j = 0; j < 4u; ++j) {  // unrolled: d[j] stays in registers
            const unsigned long long h = h0 + j;
            if (h < (unsigned long long)n)
                y[h] = optbench_dropout_element(x[h], d[j], threshold, scale);
        }
    }
}

extern "C" __global__ void optbench_dropout_vec4(
    const float* x, float* y, const long long n, const unsigned long long offset,
    const unsigned int key0, const unsigned int key1,
    const unsigned long long threshold, const float scale)
{
    optbench_dropout_vec4_loop(x, y, n, offset, key0, key1, threshold, scale,
                               (long long)blockIdx.x * blockDim.x + threadIdx.x,
                               (long long)gridDim.x * blockDim.x);
}

extern "C" __global__ void optbench_dropout_scalar(
    const float* x, float* y, const long long n, const unsigned long long offset,
    const unsigned int key0, const unsigned int key1,
    const unsigned long long threshold, const float scale)
{
    optbench_dropout_scalar_loop(x, y, n, offset, key0, key1, threshold, scale,
                                 (long long)blockIdx.x * blockDim.x + threadIdx.x,
                                 (long long)gridDim.x * blockDim.x);
}

// Population: `members` runs in lockstep, member m's n elements at
// x + m * ld and y + m * ld (ld >= n; ld = n for a (P, ...) array), its
// Philox key (keys[2m], keys[2m + 1]) of a (P, 2) row-major array, every
// member at the same stream offset. The member is blockIdx.y; members past
// gridDim.y (which CUDA caps at 65535) are taken by the same blocks in turn,
// so one launch covers any P. Per member, blockIdx.x and threadIdx.x run the
// single-run loop with that member's pointers and key: member m's output is
// the single run's, whatever the grid.

// The float4 loop per member: also needs ld % 4 == 0, so that every
// member's rows start 16-byte aligned.
extern "C" __global__ void optbench_dropout_pop_vec4(
    const float* x, float* y, const unsigned int* keys, const long long members,
    const long long n, const long long ld, const unsigned long long offset,
    const unsigned long long threshold, const float scale)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long m = blockIdx.y; m < members; m += gridDim.y)
        optbench_dropout_vec4_loop(x + m * ld, y + m * ld, n, offset, keys[2 * m], keys[2 * m + 1],
                                   threshold, scale, tid, stride);
}

// The scalar loop per member: any alignment, offset and ld.
extern "C" __global__ void optbench_dropout_pop_scalar(
    const float* x, float* y, const unsigned int* keys, const long long members,
    const long long n, const long long ld, const unsigned long long offset,
    const unsigned long long threshold, const float scale)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long m = blockIdx.y; m < members; m += gridDim.y)
        optbench_dropout_scalar_loop(x + m * ld, y + m * ld, n, offset, keys[2 * m], keys[2 * m + 1],
                                     threshold, scale, tid, stride);
}

// The raw draws: out[h] = the 32-bit word of element h (tests and
// diagnostics: it exposes the generator itself, independent of p).
extern "C" __global__ void optbench_dropout_draws(
    unsigned int* out, const long long n, const unsigned long long offset,
    const unsigned int key0, const unsigned int key1)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n <= 0) return;
    const unsigned long long q0 = offset >> 2;
    const long long blocks = (long long)(((offset + (unsigned long long)n - 1ull) >> 2) - q0) + 1;
    for (long long g = tid; g < blocks; g += stride) {
        const unsigned long long q = q0 + (unsigned long long)g;
        unsigned int d[4];
        optbench_dropout_block(q, key0, key1, d[0], d[1], d[2], d[3]);
        const unsigned long long h0 = (q << 2) - offset;
#pragma unroll
        for (unsigned int j = 0; j < 4u; ++j) {
            const unsigned long long h = h0 + j;
            if (h < (unsigned long long)n) out[h] = d[j];
        }
    }
}
