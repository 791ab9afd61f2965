/* Firmware harness for a real board: the inputs are linked into the image (harness_inputs.c,
 * written by the runner), the outputs go to the console (console.h: the chip's USART), so the
 * image needs neither a debugger nor a host file system and runs the same on the chip as
 * under QEMU. It prints, one line each:
 *     harness: inputs <N>
 *     output <i> <OUTPUT_BYTES bytes in hex>
 *     harness: stack_bytes=<S>
 * then ends with console_exit(): "harness: exit <code>" (0 success; 4 MODEL_RUN() failed;
 * 6 a fault, from startup.c). Each inference is measured by measure.c.
 *
 * The build passes the generated names, as for harness.c: -DMODEL_HEADER="\"mnv2_model.h\"" ...
 */
#include <stdint.h>
#include <string.h>

#include "console.h"
#include "measure.h"

#include MODEL_HEADER

enum { EXIT_OK = 0, EXIT_RUN = 4 };

#ifdef MODEL_RUN_ROWS /* an input is what fill writes: sensor pixels with --input-format */
#define FRAME_BYTES (MODEL_INPUT_ROWS * MODEL_INPUT_ROW_BYTES)
#else
#define FRAME_BYTES MODEL_INPUT_BYTES
#endif

extern const uint32_t harness_input_count;
extern const uint8_t harness_inputs[];

static void print_hex(const uint8_t *bytes, uint32_t count)
{
    char text[2 * 32 + 1];
    while (count > 0) {
        uint32_t n = count < 32 ? count : 32, i;
        for (i = 0; i < n; ++i) {
            text[2 * i] = "0123456789abcdef"[bytes[i] >> 4];
            text[2 * i + 1] = "0123456789abcdef"[bytes[i] & 0xF];
        }
        text[2 * n] = '\0';
        console_print(text);
        bytes += n;
        count -= n;
    }
}

int main(void)
{
    uint32_t stack_bytes = 0;
    if (prepare_model() != 0)
        return console_fail(EXIT_RUN, "the model refused the arena");
    console_print("harness: inputs ");
    console_print_u32(harness_input_count, 10);
    console_print("\n");
    for (uint32_t i = 0; i < harness_input_count; ++i) {
        const uint8_t *input = harness_inputs + (size_t)i * FRAME_BYTES;
#ifndef MODEL_RUN_ROWS /* --input rows builds take the rows from flash as they run */
        memcpy(MODEL_INPUT(), input, MODEL_INPUT_BYTES);
#endif
        if (run_measured(input, &stack_bytes) != 0)
            return console_fail(EXIT_RUN, "the model's run function failed");
        console_print("output ");
        console_print_u32(i, 10);
        console_print(" ");
        print_hex((const uint8_t *)MODEL_OUTPUT(), MODEL_OUTPUT_BYTES);
        console_print("\n");
    }
    console_print_stack_bytes(stack_bytes);
    return EXIT_OK;
}
