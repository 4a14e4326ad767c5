// optbench: per-step bookkeeping on the device (kernels/steps.py launches it).
// For each of P runs trained in lockstep (P = 1 for a single run): while the
// run is active, a finite loss and gradient norm (the root of the given
// g . g, taken here: sqrtf is correctly rounded, as NumPy's sqrt) add the
// norm to its running sum; the first non-finite one freezes the run (active = 0: the optimiser
// kernels then skip it) and records the step. One thread per run, so the host
// never reads a flag inside an epoch. Grid-stride, no shared memory.
extern "C" __global__ void optbench_step_account(
    const float* __restrict__ loss, const float* __restrict__ gsq,
    int* __restrict__ active, float* __restrict__ norm_sum, int* __restrict__ bad_step,
    const long long P, const int step)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x; m < P; m += stride) {
        if (!active[m]) continue;
        const float l = loss[m], g = sqrtf(gsq[m]);
        if (isfinite(l) && isfinite(g)) {
            norm_sum[m] += g;
        } else {
            active[m] = 0;
            bad_step[m] = step;
        }
    }
}
