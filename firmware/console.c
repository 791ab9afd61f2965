/* See console.h: what every console shares, on top of its console_print(). */
#include "console.h"

void console_print_u32(uint32_t value, unsigned base)
{
    char text[2 + 10 + 1]; /* "0x", up to 10 digits, NUL */
    char *p = text + sizeof text - 1;
    *p = '\0';
    do {
        *--p = "0123456789abcdef"[value % base];
        value /= base;
    } while (value != 0);
    if (base == 16) {
        *--p = 'x';
        *--p = '0';
    }
    console_print(p);
}

int console_fail(int code, const char *message)
{
    console_print("harness: ");
    console_print(message);
    console_print("\n");
    return code;
}

void console_print_stack_bytes(uint32_t stack_bytes)
{
    console_print("harness: stack_bytes=");
    console_print_u32(stack_bytes, 10);
    console_print("\n");
}
