/*
 * abi.h — the one definition of every kernel's parameter struct.
 *
 * Included by the CUDA sources and run through bindgen by build.rs, so Rust and CUDA
 * share each layout. Rules: plain C, fixed-width fields, device pointers as
 * `unsigned long long` (a CUdeviceptr), no pointers to host memory, and every kernel
 * takes exactly one of these structs by value (`__grid_constant__ const XParams p`).
 */
#ifndef RIGHTSIZE_ABI_H
#define RIGHTSIZE_ABI_H

/* ---- smid.cu ---------------------------------------------------------------- */

/** Threads per block of `smid_record`. */
#define RS_SMID_THREADS 128

/**
 * smid_record: work unit u writes the %smid of the SM that ran it to sm[u],
 * after spinning for `spin_cycles` clock cycles (so that all SMs get work).
 */
typedef struct SmidParams {
    unsigned long long sm;       /* unsigned int[units], output */
    unsigned long long spin_cycles;
    unsigned int units;
    unsigned int _pad;
} SmidParams;

/* ---- vector.cu -------------------------------------------------------------- */

/** Threads per block of `vector_add_f16`. */
#define RS_VECTOR_THREADS 256
/** Elements each thread handles per work unit (one 16-byte vector of halves). */
#define RS_VECTOR_ELEMS_PER_THREAD 8
/** Elements in one work unit of `vector_add_f16`. */
#define RS_VECTOR_UNIT (RS_VECTOR_THREADS * RS_VECTOR_ELEMS_PER_THREAD)

/** vector_add_f16: c[i] = a[i] + b[i] for i < n, FP16 in and out, FP32 arithmetic. */
typedef struct VectorAddParams {
    unsigned long long a;        /* const half[n] */
    unsigned long long b;        /* const half[n] */
    unsigned long long c;        /* half[n], output */
    unsigned long long n;
} VectorAddParams;

#endif
