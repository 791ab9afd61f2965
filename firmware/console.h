/* The console of the firmware: where the harness and the fault handler print, and how the
 * program ends. Each board links one implementation: semihost.c (QEMU's MPS boards, through
 * the debugger) or stm32_usart.c (a real STM32's USART, the same image a user flashes). */
#ifndef FW_CONSOLE_H
#define FW_CONSOLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* C++ applications (examples/firmware_cmake/sketch.cpp) print through it too */
#endif

void console_print(const char *text);

/* `value` in base 10, or in base 16 with a 0x prefix. */
void console_print_u32(uint32_t value, unsigned base);

/* Print "harness: <message>" and return `code`, for `return console_fail(...)`. */
int console_fail(int code, const char *message);

/* The line the runner reads the stack high-water mark from: "harness: stack_bytes=<S>". */
void console_print_stack_bytes(uint32_t stack_bytes);

/* End the program with `code`: the exit status under semihosting; on a real board the line
 * "harness: exit <code>", then the core idles for good. */
void console_exit(int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* FW_CONSOLE_H */
