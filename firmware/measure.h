/* What every firmware harness measures around one inference: the instructions (between two
 * marker functions the QEMU plugin watches) and the deepest stack use. */
#ifndef FW_MEASURE_H
#define FW_MEASURE_H

#include <stdint.h>

/* Run the model once between the markers; return its result and raise `*stack_bytes` to
 * this run's stack depth if deeper. */
int run_measured(uint32_t *stack_bytes);

#endif /* FW_MEASURE_H */
