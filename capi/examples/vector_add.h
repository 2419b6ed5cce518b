/* What the C examples share: vector_add_f16's parameter struct, as kernels/abi.h lays it
 * out, and exact FP16 values to check its sums with. */
#ifndef RIGHTSIZE_EXAMPLE_VECTOR_ADD_H
#define RIGHTSIZE_EXAMPLE_VECTOR_ADD_H

#include <stdint.h>

typedef struct {
    unsigned long long a, b, c, n;
} VectorAddParams;

/* The FP16 bits of a small non-negative integer (exact below 2048). */
static inline uint16_t half_of(unsigned v) {
    if (v == 0) return 0;
    unsigned e = 0;
    while ((v >> (e + 1)) != 0) e++;
    return (uint16_t)(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}

#endif
