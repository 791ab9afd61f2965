/* A tiny firmware around the generated model: draw an input, run one inference, report the
 * most likely class. Only the three calls of mnv2_model.h touch the model; a board would
 * fill the input from its camera and send the result wherever it needs to go.
 *
 * The input drawn here suits the demo digits model (int8 input where -128 is black and 127
 * white): a white vertical stroke, a "1". */
#include <stdio.h>
#include <string.h>

#include "mnv2_model.h"

#define SIDE 96     /* the model's input is SIDE x SIDE x CHANNELS, NHWC */
#define CHANNELS 3

static void draw_one(int8_t *image)
{
    int y, x;
    memset(image, -128, MNV2_INPUT_BYTES);
    for (y = 16; y < SIDE - 16; y++) {
        for (x = SIDE / 2 - 6; x < SIDE / 2 + 6; x++) {
            memset(&image[(y * SIDE + x) * CHANNELS], 127, CHANNELS);
        }
    }
}

int main(void)
{
    const int8_t *scores;
    int best = 0, i, status;

    if (MNV2_INPUT_BYTES != SIDE * SIDE * CHANNELS) {
        printf("this example draws a %dx%dx%d input; the model wants %d bytes\n", SIDE, SIDE, CHANNELS,
               MNV2_INPUT_BYTES);
        return 1;
    }
    draw_one(mnv2_input());
    status = mnv2_run();
    if (status != 0) {
        printf("mnv2_run failed with %d\n", status);
        return 1;
    }
    scores = mnv2_output();
    for (i = 1; i < MNV2_OUTPUT_BYTES; i++) {
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    /* The softmax output is int8 with scale 1/256 and zero point -128. */
    printf("class %d, probability %.2f (arena %d bytes)\n", best, (scores[best] + 128) / 256.0,
           MNV2_ARENA_BYTES);
    return 0;
}
