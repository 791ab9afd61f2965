/* A Cortex-M firmware around the generated model, in C: draw an input, run one inference,
 * print the scores and the most likely class on the board's console, then stop. A real
 * application fills the input from its sensor instead.
 *
 * The input drawn here suits the demo digits model (96x96x3, int8, -128 black and 127
 * white): a white vertical stroke, a "1". The console is mnv2gen's (console.h): semihosting
 * under QEMU, a UART on a board. */
#include <stdint.h>
#include <string.h>

#include "console.h"
#include "mnv2_model.h"

#define SIDE 96 /* the model's input is SIDE x SIDE x CHANNELS, NHWC */
#define CHANNELS 3

typedef char input_is_96x96x3[MNV2_INPUT_BYTES == SIDE * SIDE * CHANNELS ? 1 : -1];

static void draw_one(int8_t *image)
{
    memset(image, -128, MNV2_INPUT_BYTES);
    for (int y = 16; y < SIDE - 16; y++) {
        for (int x = SIDE / 2 - 6; x < SIDE / 2 + 6; x++) {
            memset(&image[(y * SIDE + x) * CHANNELS], 127, CHANNELS);
        }
    }
}

int main(void)
{
    draw_one(mnv2_input());
    const int status = mnv2_run();
    if (status != MNV2_OK) {
        console_print("mnv2_run failed with ");
        console_print_u32((uint32_t)status, 10);
        console_print("\n");
        return 1;
    }
    const int8_t *scores = mnv2_output();
    int best = 0;
    /* Each output byte as an unsigned number, so a test can compare it with TFLite's. */
    console_print("output:");
    for (int i = 0; i < MNV2_OUTPUT_BYTES; i++) {
        console_print(" ");
        console_print_u32((uint8_t)scores[i], 10);
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    console_print("\nclass ");
    console_print_u32((uint32_t)best, 10);
    console_print("\n");
    return 0;
}
