/* Firmware harness for generated models, run under QEMU (or a debugger) with semihosting.
 *
 * Command line (semihosting): <program> <input file> <output file>
 * The input file follows host_sim's protocol, all little-endian: the 4-byte magic "MNV2", a
 * uint32 count N, then N inputs of INPUT_BYTES each. The harness writes the N outputs,
 * OUTPUT_BYTES each, to the output file, then prints one line
 *     harness: stack_bytes=<S>
 * where S is the deepest stack use of any MODEL_RUN() call (the stack is painted before each
 * run and scanned after it).
 *
 * Every MODEL_RUN() call sits between harness_marker_begin() and harness_marker_end(), whose
 * addresses the QEMU plugin (insn_count.c) takes from the ELF to count the instructions of
 * one inference. Built with -DHARNESS_TRACE, the model calls TRACE_HOOK after each layer, so the
 * plugin can split the count by layer; the hook does nothing else.
 *
 * Exit codes: 0 success; 3 bad command line or request; 4 MODEL_RUN() failed; 5 I/O error;
 * 6 a fault (startup.c). The magic "FALT" instead of "MNV2" executes an undefined instruction,
 * so tests can prove that a fault ends the program with a non-zero code.
 *
 * The build passes the generated names, as for host_sim: -DMODEL_HEADER="\"mnv2_model.h\"" ...
 */
#include <stdint.h>
#include <string.h>

#include "semihost.h"

#include MODEL_HEADER

enum { EXIT_OK = 0, EXIT_REQUEST = 3, EXIT_RUN = 4, EXIT_IO = 5 };

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
 * and return that stack pointer. Naked, so it uses no stack of its own while painting. */
__attribute__((naked, noinline)) static uint32_t *paint_stack(uint32_t *limit __attribute__((unused)))
{
    __asm__ volatile(
        "    mov r1, sp\n"
        "    movw r2, #0xA5A5\n"
        "    movt r2, #0xA5A5\n"
        "1:  cmp r0, r1\n"
        "    bhs 2f\n"
        "    str r2, [r0], #4\n"
        "    b 1b\n"
        "2:  mov r0, r1\n"
        "    bx lr\n");
}

/* Bytes of stack used below `top` since it was painted: the lowest word no longer painted. */
static uint32_t stack_used(const uint32_t *limit, const uint32_t *top)
{
    const uint32_t *p = limit;
    while (p < top && *p == STACK_PAINT)
        ++p;
    return (uint32_t)((uintptr_t)top - (uintptr_t)p);
}

/* Run the model once between the markers; return its result and raise `*stack_bytes` to
 * this run's stack depth if deeper. */
static int run_measured(uint32_t *stack_bytes)
{
    uint32_t *top = paint_stack(__stack_limit__);
    harness_marker_begin();
    int result = MODEL_RUN();
    harness_marker_end();
    uint32_t used = stack_used(__stack_limit__, top);
    if (used > *stack_bytes)
        *stack_bytes = used;
    return result;
}

/* Split the command line in place into at most `max` words separated by spaces. */
static int split_words(char *line, char **words, int max)
{
    int n = 0;
    while (*line != '\0' && n < max) {
        while (*line == ' ')
            *line++ = '\0';
        if (*line == '\0')
            break;
        words[n++] = line;
        while (*line != '\0' && *line != ' ')
            ++line;
    }
    return n;
}

static void undefined_instruction(void)
{
    __asm__ volatile("udf #0");
}

static int fail(int code, const char *message)
{
    semihost_print("harness: ");
    semihost_print(message);
    semihost_print("\n");
    return code;
}

static int run_all(int32_t in, int32_t out, uint32_t count)
{
    uint32_t stack_bytes = 0;
    for (uint32_t i = 0; i < count; ++i) {
        if (!semihost_read(in, MODEL_INPUT(), MODEL_INPUT_BYTES))
            return fail(EXIT_REQUEST, "an input is truncated");
        if (run_measured(&stack_bytes) != 0)
            return fail(EXIT_RUN, "the model's run function failed");
        if (!semihost_write(out, MODEL_OUTPUT(), MODEL_OUTPUT_BYTES))
            return fail(EXIT_IO, "cannot write the output file");
    }
    semihost_print("harness: stack_bytes=");
    semihost_print_u32(stack_bytes, 10);
    semihost_print("\n");
    return EXIT_OK;
}

int main(void)
{
    static char line[512];
    char *words[3];
    char magic[4];
    uint32_t count;
    if (!semihost_command_line(line, sizeof line) || split_words(line, words, 3) != 3)
        return fail(EXIT_REQUEST, "usage: <program> <input file> <output file>");
    int32_t in = semihost_open(words[1], SEMIHOST_MODE_READ_BINARY);
    if (in < 0)
        return fail(EXIT_IO, "cannot open the input file");
    if (!semihost_read(in, magic, sizeof magic))
        return fail(EXIT_REQUEST, "bad request header");
    if (memcmp(magic, "FALT", 4) == 0)
        undefined_instruction();
    if (memcmp(magic, "MNV2", 4) != 0 || !semihost_read(in, &count, sizeof count))
        return fail(EXIT_REQUEST, "bad request header");
    int32_t out = semihost_open(words[2], SEMIHOST_MODE_WRITE_BINARY);
    if (out < 0)
        return fail(EXIT_IO, "cannot open the output file");
    int code = run_all(in, out, count);
    semihost_close(out);
    semihost_close(in);
    return code;
}
