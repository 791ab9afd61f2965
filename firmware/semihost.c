/* See semihost.h. */
#include "console.h"
#include "semihost.h"

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_GET_CMDLINE = 0x15,
    SYS_EXIT = 0x18,
    SYS_EXIT_EXTENDED = 0x20,
};

/* Reason code of SYS_EXIT meaning "the application finished" (ADP_Stopped_ApplicationExit). */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t semihost_call(int32_t operation, const void *argument)
{
    register int32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    /* "memory": the host reads and writes our buffers behind the compiler's back. */
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static size_t string_length(const char *text)
{
    size_t n = 0;
    while (text[n] != '\0')
        ++n;
    return n;
}

int32_t semihost_open(const char *path, int32_t mode)
{
    const uint32_t args[3] = {(uint32_t)(uintptr_t)path, (uint32_t)mode, (uint32_t)string_length(path)};
    return semihost_call(SYS_OPEN, args);
}

void semihost_close(int32_t handle)
{
    const uint32_t args[1] = {(uint32_t)handle};
    (void)semihost_call(SYS_CLOSE, args);
}

/* SYS_READ and SYS_WRITE return the number of bytes NOT transferred. */
int semihost_read(int32_t handle, void *buffer, size_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buffer, (uint32_t)bytes};
    return semihost_call(SYS_READ, args) == 0;
}

int semihost_write(int32_t handle, const void *buffer, size_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buffer, (uint32_t)bytes};
    return semihost_call(SYS_WRITE, args) == 0;
}

void semihost_print(const char *text)
{
    (void)semihost_call(SYS_WRITE0, text);
}

int semihost_command_line(char *buffer, size_t size)
{
    uint32_t args[2] = {(uint32_t)(uintptr_t)buffer, (uint32_t)size};
    if (size == 0 || semihost_call(SYS_GET_CMDLINE, args) != 0)
        return 0;
    buffer[args[1] < size ? args[1] : size - 1] = '\0';
    return 1;
}

void semihost_exit(int code)
{
    if (code == 0) {
        /* On 32-bit Arm, SYS_EXIT takes the reason itself in r1 and always means "exit 0". */
        (void)semihost_call(SYS_EXIT, (const void *)(uintptr_t)ADP_STOPPED_APPLICATION_EXIT);
    } else {
        /* Only SYS_EXIT_EXTENDED carries an exit code on 32-bit Arm. */
        const uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
        (void)semihost_call(SYS_EXIT_EXTENDED, args);
    }
    for (;;) {
    }
}

/* The console (console.h) of the boards QEMU runs with semihosting. */
void console_print(const char *text)
{
    semihost_print(text);
}

void console_exit(int code)
{
    semihost_exit(code);
}
