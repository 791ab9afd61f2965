// The same tiny program as ../firmware_make, as a C++ application written the way an Arduino
// sketch is: setup() once, loop() forever. It only includes the generated header, whose
// extern "C" block gives the model's functions C linkage, so the C objects link into a C++
// program as they are.
//
// The input drawn here suits the demo digits model (int8 input where -128 is black and 127
// white): a white vertical stroke, a "1".
#include <cstdio>
#include <cstring>

#include "mnv2_model.h"

namespace {

constexpr int kSide = 96;  // the model's input is kSide x kSide x kChannels, NHWC
constexpr int kChannels = 3;

void draw_one(int8_t *image)
{
    std::memset(image, -128, MNV2_INPUT_BYTES);
    for (int y = 16; y < kSide - 16; y++) {
        for (int x = kSide / 2 - 6; x < kSide / 2 + 6; x++) {
            std::memset(&image[(y * kSide + x) * kChannels], 127, kChannels);
        }
    }
}

int best_class(const int8_t *scores)
{
    int best = 0;
    for (int i = 1; i < MNV2_OUTPUT_BYTES; i++) {
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    return best;
}

}  // namespace

static_assert(MNV2_INPUT_BYTES == kSide * kSide * kChannels, "this example draws a 96x96x3 input");

void setup()
{
    draw_one(mnv2_input());
}

// One inference; returns false when the run failed (on a board: blink an error LED).
bool loop()
{
    const int status = mnv2_run();
    if (status != MNV2_OK) {
        std::printf("mnv2_run failed with %d\n", status);
        return false;
    }
    const int8_t *scores = mnv2_output();
    const int best = best_class(scores);
    // The softmax output is int8 with scale 1/256 and zero point -128.
    std::printf("class %d, probability %.2f (arena %d bytes)\n", best, (scores[best] + 128) / 256.0,
                MNV2_ARENA_BYTES);
    return true;
}

// What the Arduino core does for a sketch, once: here one pass of loop() is enough.
int main()
{
    setup();
    return loop() ? 0 : 1;
}
