// smid.cu — records which SM ran each work unit.
//
// Computes:   sm[u] = %smid of the SM that ran work unit u.
// Work unit:  one index u < units; each spins `spin_cycles` cycles first so that a long
//             enough launch spreads over every SM it is allowed to use.
// Shapes:     any units >= 0.
// Reference:  none (the output depends on the hardware); tests check the set of SMs.
// Used by the tests that prove partitions confine kernels.
#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_SMID_THREADS), smid_record, SmidParams) {
    rs::pdl_sync();
    unsigned int* out = rs::ptr<unsigned int>(p.sm);
    RS_FOR_EACH_UNIT(u, p.units, t) {
        const long long start = clock64();
        while (clock64() - start < (long long)p.spin_cycles) {
        }
        if (threadIdx.x == 0) out[u] = rs::smid();
        __syncthreads();
    }
}
