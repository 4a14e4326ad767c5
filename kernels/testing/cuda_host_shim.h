// Host shim: lets a CUDA kernel's exact source compile with a host C++
// compiler (g++ -std=c++17), so kernels/testing/cuda_host.py can run every (block,
// thread) of a launch one after another on the CPU.
//
// It supplies only what the optbench kernels use. It deliberately has no
// __shared__ and no __syncthreads(): sequential threads would compute the
// wrong thing for a kernel that needs them, so such a kernel must fail to
// build here instead of passing quietly.
#pragma once

// Lets a source tell it is being built by this shim (__CUDA_ARCH__ stays
// undefined: this is a host build, and sources pick their host branches).
#define OPTBENCH_CUDA_HOST_SHIM 1

#include <cmath>    // sqrtf, fmaf, expf, ... exactly as device code calls them
#include <cstdint>
#include <cstring>  // memcpy for the bit casts
#include <type_traits>

// Qualifiers: nothing to do on the host. g++ knows __restrict__ already.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

// Vector types with CUDA's member names and alignment: the vec4 kernels
// reinterpret_cast float buffers to float4, which needs 16-byte alignment on
// the host (SSE loads) as on the GPU.
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
struct alignas(8) ushort4 { unsigned short x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

// The launch coordinates, set by the generated launcher before each call of
// the kernel. thread_local so two Python threads launching at once cannot
// see each other's coordinates.
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;

// Integer and bit-cast intrinsics (the dropout kernels' hash uses them).
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
// Fast-math float intrinsics: the host has only the precise versions, which
// are within the intrinsics' documented error of them.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::isfinite;  // a device function in CUDA; <cmath> puts it in std
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }

namespace optbench_host {

// Argument wrappers the generated launcher passes to the kernel. They make
// the C++ compiler check the launcher's argument spec against the kernel's
// real signature: Exact<T> converts only to a parameter of type T (so a spec
// that says "f32" for a `long long n` is a compile error, not a silent
// conversion), Ptr<T> only to T* or const T*, and AnyPtr to any pointer.
template <class T>
struct Exact {
    T v;
    template <class U, class = std::enable_if_t<std::is_same_v<U, T>>>
    operator U() const { return v; }
};

template <class T>
struct Ptr {
    void* p;
    template <class U, class = std::enable_if_t<std::is_same_v<std::remove_const_t<U>, T>>>
    operator U*() const { return static_cast<U*>(p); }
};

struct AnyPtr {
    void* p;
    template <class U>
    operator U*() const { return static_cast<U*>(p); }
};

}  // namespace optbench_host
