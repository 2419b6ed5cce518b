/* What the C examples share: CHECK(call) prints a failed call's status and
 * rightsize_last_error(), and returns 1 from main. */
#ifndef RIGHTSIZE_EXAMPLE_CHECK_H
#define RIGHTSIZE_EXAMPLE_CHECK_H

#include <stdio.h>

#include "rightsize.h"

#define CHECK(call)                                                                     \
    do {                                                                                \
        RsStatus s_ = (call);                                                           \
        if (s_ != RS_STATUS_OK) {                                                       \
            fprintf(stderr, "%s: status %d: %s\n", #call, (int)s_, rightsize_last_error()); \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

#endif
