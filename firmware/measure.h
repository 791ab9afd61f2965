/* What every firmware harness measures around one inference: the instructions (between two
 * marker functions the QEMU plugin watches) and the deepest stack use. */
#ifndef FW_MEASURE_H
#define FW_MEASURE_H

#include <stdint.h>

/* Hand the model its arena if it takes one from the caller (C generated with --arena
 * external: the build defines MODEL_SET_ARENA); 0 on success. Call once, before any input. */
int prepare_model(void);

/* Run the model once between the markers; return its result and raise `*stack_bytes` to
 * this run's stack depth if deeper. C generated with --input rows takes its input from
 * `frame` (MODEL_INPUT_ROWS rows of what fill writes, outside the arena, e.g. in flash) row by row, the copies
 * counted with the run (a camera's rows cost theirs too); other C has its input written at
 * MODEL_INPUT() already and ignores `frame`. */
int run_measured(const void *frame, uint32_t *stack_bytes);

#endif /* FW_MEASURE_H */
