// gemm_sm90.cu — C = act(A·Bᵀ + bias) + R on Hopper: TMA loads into a shared-memory ring on
// mbarriers, wgmma (HGMMA) from shared memory, persistent over output tiles.
//
// Computes:   as gemm.cu (GemmParams: bias, GELU tanh/erf, FP16 rounding before the residual
//             add), for batch = 1.
// Work unit:  one BM×BN output tile; units = ⌈M/BM⌉·⌈N/BN⌉. Prefill tiles 128×256, 128×192,
//             128×160, 128×128, 128×64 and 128×48 (gemm_f16_wgmma_128xBN; params.rs::
//             gemm_wgmma_kernel picks one; 160 and 48 make one round of tiles fill the SMs
//             where the others leave many idle), and
//             64×32 and 64×64 for small M (gemm_f16_wgmma_64x32/_64x64: 8 < M ≤ 64, where
//             enough tiles to keep every SM streaming weights matter most). Each block loops over units (u = blockIdx.x,
//             + gridDim.x, …; along M first when M ≤ N, see tile_origin), so any grid is
//             correct; a tile's K order is fixed, so the output does not depend on the grid.
// Block:      a producer warpgroup and BM/64 consumer warpgroups. The producer's first
//             thread issues the TMA loads of A (BM×64) and B (BN×64) per K step into stage s
//             of a 192 KiB ring (4 to 16 stages) and arms full[s] with their bytes. Each
//             consumer computes 64 rows × BN columns with wgmma.m64nBNk16 (4 per K step,
//             operands from shared memory, 128-byte swizzle, FP32 accumulators in registers),
//             keeps one K step's group in flight while the next is issued, and releases each
//             stage through empty[s] once the group reading it is done. The epilogue goes
//             through shared memory 32 columns at a time (16 for the last of a 48-wide tile).
// Shapes:     any M, N ≥ 1; K ≥ 8 and a multiple of 8 (16-byte global strides for TMA); A and B
//             16-byte aligned; lda, ldb multiples of 8. TMA zero-fills past M, N and K.
// Params:     GemmTmaParams — the tensor maps of A and B (made on the host, see
//             kernels/params.rs::GemmTmaParams::new) and the GemmParams of the epilogue.
// Only sm_90a has wgmma/TMA; on other targets the kernels trap (the runtime never picks them).
// Reference:  kernels/reference.rs::gemm.
#include "common.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using namespace rs;
constexpr int BK = RS_GEMM_W_BK, EPI_STRIDE = RS_GEMM_W_EPI_STRIDE;

// Stores C[row + 8h][col + j] = gemm_value(src[8h·EPI_STRIDE + j], …) for h = 0, 1 and j < 8,
// those with row + 8h < M and col + j < N, from the epilogue buffer `src`. When `vec` (C, R and
// the bias 16-byte aligned, ldc and ldr multiples of 8) and all eight columns are in range:
// one 16-byte load of the bias, and per row one of R and one 16-byte store, every load issued
// before the arithmetic.
__device__ __forceinline__ void store8x2(const GemmParams& p, __half* C, const __half* R, const __half* bias,
                                         unsigned row, unsigned col, const float* src, bool vec) {
    if (vec && col + 8 <= p.n) {
        float x[2][8];
        uint4 rw[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float4 lo = *reinterpret_cast<const float4*>(src + 8 * h * EPI_STRIDE);
            const float4 hi = *reinterpret_cast<const float4*>(src + 8 * h * EPI_STRIDE + 4);
            x[h][0] = lo.x, x[h][1] = lo.y, x[h][2] = lo.z, x[h][3] = lo.w;
            x[h][4] = hi.x, x[h][5] = hi.y, x[h][6] = hi.z, x[h][7] = hi.w;
            rw[h] = R && row + 8 * h < p.m ? *reinterpret_cast<const uint4*>(R + (u64)(row + 8 * h) * p.ldr + col)
                                           : make_uint4(0, 0, 0, 0);
        }
        const uint4 bw = bias ? *reinterpret_cast<const uint4*>(bias + col) : make_uint4(0, 0, 0, 0);
        const __half* b = reinterpret_cast<const __half*>(&bw);
        // rs::gemm_value's steps, each branch taken once for the sixteen values.
        if (bias) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] += __half2float(b[j % 8]);
        }
        if (p.act == RS_ACT_GELU_TANH) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] = rs::gelu(x[j / 8][j % 8], RS_ACT_GELU_TANH);
        } else if (p.act == RS_ACT_GELU_ERF) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] = rs::gelu(x[j / 8][j % 8], RS_ACT_GELU_ERF);
        }
        if (R) {
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const __half* r = reinterpret_cast<const __half*>(&rw[j / 8]);
                x[j / 8][j % 8] = rs::round_half(x[j / 8][j % 8]) + __half2float(r[j % 8]);
            }
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            if (row + 8 * h >= p.m) break;
            uint4 out;
            __half2* o2 = reinterpret_cast<__half2*>(&out);
#pragma unroll
            for (int j = 0; j < 4; ++j) o2[j] = __floats2half2_rn(x[h][2 * j], x[h][2 * j + 1]);
            *reinterpret_cast<uint4*>(C + (u64)(row + 8 * h) * p.ldc + col) = out;
        }
        return;
    }
#pragma unroll 1
    for (unsigned e = 0; e < 16; ++e) {
        const unsigned r = row + 8 * (e / 8), c = col + e % 8;
        if (r >= p.m || c >= p.n) continue;
        const float b = bias ? __half2float(bias[c]) : 0.0f;
        const float res = R ? __half2float(R[(u64)r * p.ldr + c]) : 0.0f;
        C[(u64)r * p.ldc + c] = __float2half_rn(rs::gemm_value(src[8 * (e / 8) * EPI_STRIDE + e % 8], p.act, bias, b, R, res));
    }
}

// Shared-memory matrix descriptor of a K-major tile with 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart.
__device__ __forceinline__ u64 desc(unsigned addr) {
    u64 d = (u64)((addr & 0x3FFFF) >> 4);
    d |= (u64)1 << 16;             // leading byte offset (unused for swizzled K-major)
    d |= (u64)(1024 >> 4) << 32;   // stride byte offset: 8 rows × 128 bytes
    d |= (u64)1 << 62;             // 128-byte swizzle
    return d;
}

__device__ __forceinline__ void wgmma_256(float (&d)[128], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %130, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_192(float (&d)[96], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %98, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n192k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, %96, %97, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_160(float (&d)[80], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %82, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n160k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79}, %80, %81, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_128(float (&d)[64], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_64(float (&d)[32], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_48(float (&d)[24], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %26, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n48k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23}, %24, %25, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
        : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_32(float (&d)[16], u64 da, u64 db, int scale_d) {
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %18, 0;\n"
        " wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(da), "l"(db), "r"(scale_d));
}

template <int BN>
__device__ __forceinline__ void mma_step(float (&d)[BN / 2], u64 da, u64 db) {
    if constexpr (BN == 256) {
        wgmma_256(d, da, db, 1);
    } else if constexpr (BN == 192) {
        wgmma_192(d, da, db, 1);
    } else if constexpr (BN == 160) {
        wgmma_160(d, da, db, 1);
    } else if constexpr (BN == 128) {
        wgmma_128(d, da, db, 1);
    } else if constexpr (BN == 64) {
        wgmma_64(d, da, db, 1);
    } else if constexpr (BN == 48) {
        wgmma_48(d, da, db, 1);
    } else {
        wgmma_32(d, da, db, 1);
    }
}

// Tile order: along M first when A is no larger than B (M ≤ N), so that a wave of blocks
// shares few B tiles and A's rows stay in L2 while B streams once; else along N first.
__device__ __forceinline__ void tile_origin(u64 u, const GemmParams& p, unsigned tiles_m, unsigned tiles_n, int bm,
                                           int bn, unsigned& m0, unsigned& n0) {
    const bool m_first = p.m <= p.n;
    m0 = (m_first ? u % tiles_m : u / tiles_n) * bm;
    n0 = (m_first ? u / tiles_m : u % tiles_n) * bn;
}

// CONSUMERS warpgroups of 64 rows each (BM = 64·CONSUMERS) and one producer warpgroup.
template <int BN, int CONSUMERS>
__device__ __forceinline__ void gemm_wgmma(const GemmTmaParams& tp, unsigned char* smem_raw) {
    constexpr int BM = 64 * CONSUMERS;
    constexpr unsigned STAGE_BYTES = (BM + BN) * BK * 2;
    constexpr int STAGES = RS_GEMM_W_RING_BYTES / STAGE_BYTES;
    const GemmParams& p = tp.g;
    // Stages at a 1024-byte boundary (the swizzle atom), barriers after them.
    // (Pointer arithmetic on the shared array, so the compiler knows the epilogue buffers are
    // shared memory and uses LDS/STS, not generic loads and stores.)
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const unsigned base = smem_addr(smem);
    const unsigned full = base + STAGES * STAGE_BYTES, empty = full + STAGES * 8;
    // Each consumer warpgroup's epilogue buffer: 64 rows × 32 FP32 columns, rows padded to
    // EPI_STRIDE floats (conflict-free float2 writes), after the barriers.
    float* epi = reinterpret_cast<float*>(smem + RS_GEMM_W_RING_BYTES + 256);
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const unsigned tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    const u64 units = (u64)tiles_m * tiles_n;
    const int kblocks = (p.k + BK - 1) / BK;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full + 8 * s, 1);
            mbar_init(empty + 8 * s, CONSUMERS * 128);
        }
        mbar_init_fence();
    }
    __syncthreads();

    // With two consumer warpgroups, registers move from the producer (one thread issues the
    // loads) to the consumers: 40 + 2 × 232 per thread fit the SM's 64 Ki with room for the
    // 128×256 tile's accumulators and its epilogue.
    if (wg == 0) {
        if constexpr (CONSUMERS == 2) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (t != 0) return;
        int stage = 0;
        unsigned phase = 0;
        RS_FOR_EACH_UNIT(u, units) {
            unsigned m0, n0;
            tile_origin(u, p, tiles_m, tiles_n, BM, BN, m0, n0);
            for (int kb = 0; kb < kblocks; ++kb) {
                mbar_wait(empty + 8 * stage, phase ^ 1);
                const unsigned a = base + stage * STAGE_BYTES, b = a + BM * BK * 2;
                mbar_expect_tx(full + 8 * stage, STAGE_BYTES);
                tma_load(a, &tp.map_a, kb * BK, (int)m0, full + 8 * stage);
                tma_load(b, &tp.map_b, kb * BK, (int)n0, full + 8 * stage);
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            }
        }
        return;
    }

    // Consumers: warpgroup 1 takes rows 0–63 of the tile, warpgroup 2 rows 64–127.
    if constexpr (CONSUMERS == 2) asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int half = wg - 1, warp = t / 32, lane = t % 32;
    int stage = 0;
    unsigned phase = 0;
    const __half* R = p.residual ? rs::ptr<const __half>(p.residual) : nullptr;
    const __half* bias = p.bias ? rs::ptr<const __half>(p.bias) : nullptr;
    __half* C = rs::ptr<__half>(p.c);
    const bool vec = (p.ldc & 7) == 0 && (p.c & 15) == 0 && (!R || ((p.ldr & 7) == 0 && (p.residual & 15) == 0)) &&
                     (p.bias & 15) == 0;
    RS_FOR_EACH_UNIT(u, units) {
        unsigned m0, n0;
        tile_origin(u, p, tiles_m, tiles_n, BM, BN, m0, n0);
        float d[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) d[i] = 0.0f;
        // One K step's wgmma group stays in flight while the next is issued; a stage is
        // released once the group reading it has completed.
        int held = -1;
        for (int kb = 0; kb < kblocks; ++kb) {
            mbar_wait(full + 8 * stage, phase);
            const unsigned a = base + stage * STAGE_BYTES + half * 64 * BK * 2, b = base + stage * STAGE_BYTES + BM * BK * 2;
            asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
            for (int j = 0; j < BK / 16; ++j) mma_step<BN>(d, desc(a + 32 * j), desc(b + 32 * j));
            asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
            if (held >= 0) mbar_arrive(empty + 8 * held);
            held = stage;
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        if (held >= 0) mbar_arrive(empty + 8 * held);
        // The epilogue goes through shared memory, 32 columns at a time: each warp writes the
        // 16×32 chunk of its accumulators to its rows of the warpgroup's buffer (unrolled,
        // compile-time register indexes; a warp's fragment is 16 whole rows, so warps need
        // not wait for each other), then each lane stores runs of 8 columns of two rows
        // (16-byte loads of the bias and residual and 16-byte stores), so the epilogue's code
        // is small (one chunk's, not BN/4 pairs': an unrolled epilogue of a 128×256 tile was
        // ~200 KB of instructions) and its global accesses are coalesced.
        // d[4i + e]: row 16·warp + lane/4 (+8 for e ≥ 2), column 8i + 2·(lane%4) (+1 for odd e).
        // With BN = 48 the last chunk has 16 columns.
        float* chunk = epi + half * 64 * EPI_STRIDE;
        constexpr int CHUNKS = (BN + 31) / 32;
        static_assert(BN % 16 == 0, "chunks of 32 columns, the last one possibly of 16");
#pragma unroll 1
        for (int c = 0; c < CHUNKS; ++c) {
            __syncwarp();  // this warp has read its rows of the previous chunk
            // Chunk c's accumulators, d[16c …16c + 15]: one unrolled copy of the stores per
            // chunk, of which the one for c runs (registers cannot be indexed at run time).
#pragma unroll
            for (int cc = 0; cc < CHUNKS; ++cc) {
                if (cc != c) continue;
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        if (32 * cc + 8 * i >= BN) continue;
                        float2* dst = reinterpret_cast<float2*>(chunk + (warp * 16 + lane / 4 + 8 * h) * EPI_STRIDE +
                                                                8 * i + 2 * (lane % 4));
                        *dst = make_float2(d[16 * cc + 4 * i + 2 * h], d[16 * cc + 4 * i + 2 * h + 1]);
                    }
            }
            __syncwarp();
            // Each lane stores rows lane/4 and lane/4 + 8 of the warp's 16, columns 8·(lane%4) + 0…7.
            const unsigned r = warp * 16 + lane / 4, c8 = 8 * (lane % 4);
            const unsigned row = m0 + half * 64 + r, col = n0 + 32 * c + c8;
            const bool in_tile = BN % 32 == 0 || 32 * c + c8 < BN;  // a 48-wide tile's last chunk
            if (row < p.m && col < p.n && in_tile) store8x2(p, C, R, bias, row, col, chunk + r * EPI_STRIDE + c8, vec);
        }
    }
}

#endif

}  // namespace

extern __shared__ __align__(1024) unsigned char rs_gemm_w_smem[];

// The entry points, one per tile: gemm_wgmma<BN, consumer warpgroups> on sm_90a.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RS_GEMM_WGMMA(BN, CONSUMERS) gemm_wgmma<BN, CONSUMERS>(p, rs_gemm_w_smem)
#else
#define RS_GEMM_WGMMA(BN, CONSUMERS) __trap()
#endif

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x48(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(48, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x64(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(64, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x128(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(128, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x160(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(160, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x192(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(192, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_W_THREADS, 1) gemm_f16_wgmma_128x256(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(256, 2);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_WS_THREADS, 1) gemm_f16_wgmma_64x32(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(32, 1);
}

RS_KERNEL void __launch_bounds__(RS_GEMM_WS_THREADS, 1) gemm_f16_wgmma_64x64(const __grid_constant__ GemmTmaParams p) {
    rs::pdl_sync();
    RS_GEMM_WGMMA(64, 1);
}
