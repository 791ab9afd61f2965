/* A tiny Arm semihosting layer: just what the harness needs to talk to the debugger or
 * emulator (QEMU's -semihosting-config enable=on,target=native), with no C library.
 *
 * Every call is `bkpt 0xAB` on M-profile, with the operation number in r0 and a pointer to
 * its argument block in r1 (see Arm's "Semihosting for AArch32 and AArch64" specification).
 */
#ifndef FW_SEMIHOST_H
#define FW_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* Modes of SYS_OPEN, as fopen() spells them: 1 is "rb", 5 is "wb". */
#define SEMIHOST_MODE_READ_BINARY 1
#define SEMIHOST_MODE_WRITE_BINARY 5

/* Open a host file; returns a handle, or -1. */
int32_t semihost_open(const char *path, int32_t mode);
void semihost_close(int32_t handle);

/* Read/write exactly `bytes`; return 1 when all were transferred, 0 otherwise. */
int semihost_read(int32_t handle, void *buffer, size_t bytes);
int semihost_write(int32_t handle, const void *buffer, size_t bytes);

/* Print a NUL-terminated string on the host's console. */
void semihost_print(const char *text);

/* The command line the host gave the program (QEMU: -semihosting-config arg=...).
 * Returns 1 and a NUL-terminated line in `buffer`, or 0. */
int semihost_command_line(char *buffer, size_t size);

/* End the program; the host exits with `code`. */
void semihost_exit(int code) __attribute__((noreturn));

#endif /* FW_SEMIHOST_H */
