#pragma once
// optbench: Philox4x32-10 (Salmon et al. 2011, Random123), used by dropout.cu.
// kernels.sources.cuda_file pastes this file in place of dropout.cu's include
// line, so CuPy's NVRTC compiles one self-contained string.
// Counter (c0..c3) and key (k0, k1) to four random 32-bit words (r0..r3).
// The constants are Random123's PHILOX_M4x32_0/1 and PHILOX_W32_0/1
// (kernels/philox.py holds the same values for the NumPy path).
__host__ __device__ __forceinline__ unsigned int optbench_mulhi32(
    const unsigned int a, const unsigned int b)
{
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);  // device: one instruction
#else
    return (unsigned int)(((unsigned long long)a * b) >> 32);  // host build
#endif
}

__host__ __device__ __forceinline__ void optbench_philox4x32_10(
    unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3,
    unsigned int k0, unsigned int k1,
    unsigned int& r0, unsigned int& r1, unsigned int& r2, unsigned int& r3)
{
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {  // key schedule: k += (W0, W1) mod 2^32 between rounds
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const unsigned int hi0 = optbench_mulhi32(0xD2511F53u, c0);
        const unsigned int lo0 = 0xD2511F53u * c0;  // unsigned: wraps mod 2^32
        const unsigned int hi1 = optbench_mulhi32(0xCD9E8D57u, c2);
        const unsigned int lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    r0 = c0; r1 = c1; r2 = c2; r3 = c3;
}
