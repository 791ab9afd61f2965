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
 * Each inference is measured by measure.c (instructions between markers, stack depth).
 *
 * Exit codes: 0 success; 3 bad command line or request; 4 MODEL_RUN() (or, with an external
 * arena, handing it over) failed; 5 I/O error;
 * 6 a fault (startup.c). The magic "FALT" instead of "MNV2" executes an undefined instruction,
 * so tests can prove that a fault ends the program with a non-zero code.
 *
 * The build passes the generated names, as for host_sim: -DMODEL_HEADER="\"mnv2_model.h\"" ...
 */
#include <stdint.h>
#include <string.h>

#include "console.h"
#include "measure.h"
#include "semihost.h"

#include MODEL_HEADER

enum { EXIT_OK = 0, EXIT_REQUEST = 3, EXIT_RUN = 4, EXIT_IO = 5 };

#ifdef MODEL_RUN_ROWS
/* --input rows: the model has no input buffer; each input is read here, outside the arena,
 * and measure.c hands its rows to the model. */
#define FRAME_BYTES (MODEL_INPUT_ROWS * MODEL_INPUT_ROW_BYTES)
static MODEL_ROW_T frame[FRAME_BYTES];
#define INPUT_BUFFER() frame
#else
#define FRAME_BYTES MODEL_INPUT_BYTES
#define INPUT_BUFFER() MODEL_INPUT()
#endif

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


static int run_all(int32_t in, int32_t out, uint32_t count)
{
    uint32_t stack_bytes = 0;
    for (uint32_t i = 0; i < count; ++i) {
        if (!semihost_read(in, INPUT_BUFFER(), FRAME_BYTES))
            return console_fail(EXIT_REQUEST, "an input is truncated");
        if (run_measured(INPUT_BUFFER(), &stack_bytes) != 0)
            return console_fail(EXIT_RUN, "the model's run function failed");
        if (!semihost_write(out, MODEL_OUTPUT(), MODEL_OUTPUT_BYTES))
            return console_fail(EXIT_IO, "cannot write the output file");
    }
    console_print_stack_bytes(stack_bytes);
    return EXIT_OK;
}

int main(void)
{
    static char line[512];
    char *words[3];
    char magic[4];
    uint32_t count;
    if (!semihost_command_line(line, sizeof line) || split_words(line, words, 3) != 3)
        return console_fail(EXIT_REQUEST, "usage: <program> <input file> <output file>");
    int32_t in = semihost_open(words[1], SEMIHOST_MODE_READ_BINARY);
    if (in < 0)
        return console_fail(EXIT_IO, "cannot open the input file");
    if (!semihost_read(in, magic, sizeof magic))
        return console_fail(EXIT_REQUEST, "bad request header");
    if (memcmp(magic, "FALT", 4) == 0)
        undefined_instruction();
    if (memcmp(magic, "MNV2", 4) != 0 || !semihost_read(in, &count, sizeof count))
        return console_fail(EXIT_REQUEST, "bad request header");
    if (prepare_model() != 0)
        return console_fail(EXIT_RUN, "the model refused the arena");
    int32_t out = semihost_open(words[2], SEMIHOST_MODE_WRITE_BINARY);
    if (out < 0)
        return console_fail(EXIT_IO, "cannot open the output file");
    int code = run_all(in, out, count);
    semihost_close(out);
    semihost_close(in);
    return code;
}
