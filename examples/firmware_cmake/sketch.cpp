// The same firmware as main.c, written as an Arduino sketch: setup() once, loop() after it.
// It includes the generated header as it is: its extern "C" block gives the model's
// functions C linkage, so the C library links into a C++ program.
//
// An Arduino core supplies main() and calls loop() forever; the main() at the bottom stands
// in for it and calls loop() once, then the program ends (under QEMU: exits). On a board,
// print with Serial instead of console_print.
#include <cstdint>
#include <cstring>

#include "console.h"
#include "mnv2_model.h"

namespace {

constexpr int kSide = 96;  // the model's input is kSide x kSide x kChannels, NHWC
constexpr int kChannels = 3;
static_assert(MNV2_INPUT_BYTES == kSide * kSide * kChannels, "this sketch draws a 96x96x3 input");

// A white vertical stroke on black, a "1", in the demo digits model's int8 input.
void draw_one(int8_t *image)
{
    std::memset(image, -128, MNV2_INPUT_BYTES);
    for (int y = 16; y < kSide - 16; y++) {
        for (int x = kSide / 2 - 6; x < kSide / 2 + 6; x++) {
            std::memset(&image[(y * kSide + x) * kChannels], 127, kChannels);
        }
    }
}

void print_number(std::uint32_t value)
{
    console_print_u32(value, 10);
}

}  // namespace

void setup()
{
    draw_one(mnv2_input());
}

// One inference; false when it failed (on a board: blink an error LED).
bool loop()
{
    const int status = mnv2_run();
    if (status != MNV2_OK) {
        console_print("mnv2_run failed with ");
        print_number(static_cast<std::uint32_t>(status));
        console_print("\n");
        return false;
    }
    const int8_t *scores = mnv2_output();
    int best = 0;
    console_print("output:");  // each byte as an unsigned number, for the test to compare
    for (int i = 0; i < MNV2_OUTPUT_BYTES; i++) {
        console_print(" ");
        print_number(static_cast<std::uint8_t>(scores[i]));
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    console_print("\nclass ");
    print_number(static_cast<std::uint32_t>(best));
    console_print("\n");
    return true;
}

// What the Arduino core does with a sketch, once.
int main()
{
    setup();
    return loop() ? 0 : 1;
}
