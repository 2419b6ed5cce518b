// vector.cu — elementwise vector arithmetic.
//
// Computes:   vector_add_f16: c[i] = half(float(a[i]) + float(b[i])) for i < n.
// Work unit:  RS_VECTOR_UNIT consecutive elements (RS_VECTOR_ELEMS_PER_THREAD per thread);
//             units = ceil(n / RS_VECTOR_UNIT).
// Shapes:     any n; 16-byte vector loads when a, b and c are 16-byte aligned and the
//             unit is whole, element loads otherwise.
// Reference:  kernels/reference.rs::vector_add.
//
// add_u32, set_u32, copy_u32: counters and token ids; work unit RS_VECTOR_UNIT elements.
#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_VECTOR_THREADS), vector_add_f16, VectorAddParams) {
    rs::pdl_sync();
    const __half* a = rs::ptr<const __half>(p.a);
    const __half* b = rs::ptr<const __half>(p.b);
    __half* c = rs::ptr<__half>(p.c);
    const unsigned long long units = (p.n + RS_VECTOR_UNIT - 1) / RS_VECTOR_UNIT;
    const bool aligned = ((p.a | p.b | p.c) & 15ull) == 0;
    RS_FOR_EACH_UNIT_BY(u, units, t, 8) {
        const unsigned long long first = u * RS_VECTOR_UNIT + threadIdx.x * RS_VECTOR_ELEMS_PER_THREAD;
        if (aligned && first + RS_VECTOR_ELEMS_PER_THREAD <= p.n) {
            uint4 va = *reinterpret_cast<const uint4*>(a + first);
            uint4 vb = *reinterpret_cast<const uint4*>(b + first);
            uint4 vc;
            const __half2* ha = reinterpret_cast<const __half2*>(&va);
            const __half2* hb = reinterpret_cast<const __half2*>(&vb);
            __half2* hc = reinterpret_cast<__half2*>(&vc);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const float2 fa = __half22float2(ha[k]);
                const float2 fb = __half22float2(hb[k]);
                hc[k] = __floats2half2_rn(fa.x + fb.x, fa.y + fb.y);
            }
            *reinterpret_cast<uint4*>(c + first) = vc;
        } else {
            for (unsigned long long i = first; i < first + RS_VECTOR_ELEMS_PER_THREAD && i < p.n; ++i) {
                c[i] = __float2half_rn(__half2float(a[i]) + __half2float(b[i]));
            }
        }
    }
}

RS_KERNEL_PAIR(__launch_bounds__(RS_VECTOR_THREADS), add_u32, AddU32Params) {
    rs::pdl_sync();
    unsigned int* x = rs::ptr<unsigned int>(p.x);
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_VECTOR_UNIT - 1) / RS_VECTOR_UNIT, t, 8) {
        const unsigned long long end = min((u + 1) * RS_VECTOR_UNIT, p.n);
        for (unsigned long long i = u * RS_VECTOR_UNIT + threadIdx.x; i < end; i += blockDim.x) x[i] += p.delta;
    }
}

RS_KERNEL_PAIR(__launch_bounds__(RS_VECTOR_THREADS), copy_u32, CopyU32Params) {
    rs::pdl_sync();
    const unsigned int* src = rs::ptr<const unsigned int>(p.src);
    unsigned int* dst = rs::ptr<unsigned int>(p.dst);
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_VECTOR_UNIT - 1) / RS_VECTOR_UNIT, t, 8) {
        const unsigned long long end = min((u + 1) * RS_VECTOR_UNIT, p.n);
        for (unsigned long long i = u * RS_VECTOR_UNIT + threadIdx.x; i < end; i += blockDim.x) dst[i] = src[i];
    }
}

RS_KERNEL_PAIR(__launch_bounds__(RS_VECTOR_THREADS), set_u32, SetU32Params) {
    rs::pdl_sync();
    unsigned int* x = rs::ptr<unsigned int>(p.x);
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_VECTOR_UNIT - 1) / RS_VECTOR_UNIT, t, 8) {
        const unsigned long long end = min((u + 1) * RS_VECTOR_UNIT, p.n);
        for (unsigned long long i = u * RS_VECTOR_UNIT + threadIdx.x; i < end; i += blockDim.x) x[i] = p.value;
    }
}
