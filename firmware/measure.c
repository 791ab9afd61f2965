/* See measure.h. Every MODEL_RUN() call sits between harness_marker_begin() and
 * harness_marker_end(), whose addresses the QEMU plugin (insn_count.c) takes from the ELF to
 * count the instructions of one inference. Built with -DHARNESS_TRACE, the model calls
 * TRACE_HOOK after each layer, so the plugin can split the count by layer; the hook does
 * nothing else. The stack is painted before each run and scanned after it.
 *
 * The build passes the generated names: -DMODEL_HEADER="\"mnv2_model.h\"" -DMODEL_RUN=...
 */
#include <stdint.h>

#include "measure.h"

#include MODEL_HEADER

#define STACK_PAINT 0xA5A5A5A5u

extern uint32_t __stack_limit__[];

/* noipa: the compiler must neither inline these nor drop their calls (they have no effect
 * it can see), and the empty asm keeps each body a real function with its own address. */
__attribute__((noipa)) void harness_marker_begin(void)
{
    __asm__ volatile("");
}

__attribute__((noipa)) void harness_marker_end(void)
{
    __asm__ volatile("");
}

#ifdef HARNESS_TRACE
__attribute__((noipa)) void TRACE_HOOK(int32_t layer, const void *data, int32_t bytes)
{
    (void)layer;
    (void)data;
    (void)bytes;
    __asm__ volatile("");
}
#endif

/* Fill the free stack, from `limit` (in r0) up to the caller's stack pointer, with STACK_PAINT,
 * and return that stack pointer. Naked, so it uses no stack of its own while painting. Only
 * instructions Armv6-M has (the Cortex-M0+ build runs this too): the constant from a literal
 * pool placed right after the code; unified syntax, which GCC leaves for Thumb-1 inline asm. */
__attribute__((naked, noinline)) static uint32_t *paint_stack(uint32_t *limit __attribute__((unused)))
{
    __asm__ volatile(
        "    .syntax unified\n"
        "    mov r1, sp\n"
        "    ldr r2, =0xA5A5A5A5\n"
        "1:  cmp r0, r1\n"
        "    bhs 2f\n"
        "    str r2, [r0]\n"
        "    adds r0, #4\n"
        "    b 1b\n"
        "2:  mov r0, r1\n"
        "    bx lr\n"
        "    .ltorg\n");
}

/* Bytes of stack used below `top` since it was painted: the lowest word no longer painted. */
static uint32_t stack_used(const uint32_t *limit, const uint32_t *top)
{
    const uint32_t *p = limit;
    while (p < top && *p == STACK_PAINT)
        ++p;
    return (uint32_t)((uintptr_t)top - (uintptr_t)p);
}

#ifdef MODEL_RUN_ROWS
#include <string.h>

/* The fill function of --input rows builds: the rows asked for, copied from the frame. */
static int fill_from_frame(void *ctx, int32_t first_row, int32_t row_count, MODEL_ROW_T *dst)
{
    const MODEL_ROW_T *frame = (const MODEL_ROW_T *)ctx;
    memcpy(dst, frame + (size_t)first_row * MODEL_INPUT_ROW_BYTES, (size_t)row_count * MODEL_INPUT_ROW_BYTES);
    return 0;
}
#define RUN_MODEL(frame) MODEL_RUN_ROWS(fill_from_frame, (void *)(frame))
#else
#define RUN_MODEL(frame) ((void)(frame), MODEL_RUN())
#endif

#ifdef MODEL_SET_ARENA
/* The arena, in .bss like a static one; aligned as the generated header asks (a double's). */
static union {
    uint8_t bytes[MODEL_ARENA_BUFFER_BYTES];
    double align;
} arena_buffer;
#endif

int prepare_model(void)
{
#ifdef MODEL_SET_ARENA
    return MODEL_SET_ARENA(&arena_buffer, sizeof arena_buffer);
#else
    return 0;
#endif
}

int run_measured(const void *frame, uint32_t *stack_bytes)
{
    uint32_t *top = paint_stack(__stack_limit__);
    harness_marker_begin();
    int result = RUN_MODEL(frame);
    harness_marker_end();
    uint32_t used = stack_used(__stack_limit__, top);
    if (used > *stack_bytes)
        *stack_bytes = used;
    return result;
}
