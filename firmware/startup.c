/* Start-up code for the Cortex-M boards: vector table, reset handler, fault handler.
 *
 * The linker script (ld/sections.ld) provides the symbols below. The reset handler does what
 * a C program expects before main(): copy .data from flash to RAM, zero .bss, enable the FPU
 * (and, on the Cortex-M55, MVE: both use coprocessors 10 and 11). Any fault prints where it
 * happened on the console (console.h: semihosting, or a USART) and ends the program with exit
 * code 6, so a crash can never be mistaken for a finished run.
 */
#include <stdint.h>

#include "console.h"

#define EXIT_FAULT 6

extern uint32_t __stack_top__[];
extern uint32_t __data_load__[], __data_start__[], __data_end__[];
extern uint32_t __bss_start__[], __bss_end__[];

int main(void);
void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((naked));

/* System Control Block registers (Armv7-M / Armv8-M). */
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define CPACR_CP10_CP11_FULL (0xFu << 20)

typedef void (*vector_t)(void);

/* Initial stack pointer, then the 15 system exceptions. No interrupt is ever enabled, so no
 * external vectors are needed; every exception but reset is a fault here. */
__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)__stack_top__,
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    Fault_Handler, /* SecureFault (Armv8-M) */
    0,
    0,
    0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

static void enable_fpu(void)
{
    /* Only where there is one: the Cortex-M0+ has no FPU, and no CPACR to write. */
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= CPACR_CP10_CP11_FULL;
    /* The new access rights must be in effect before the next instruction can touch the FPU. */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
}

void Reset_Handler(void)
{
    /* First, so that no instruction below (the compiler may vectorize the loops for MVE) can
     * fault on a disabled coprocessor. */
    enable_fpu();
    const uint32_t *from = __data_load__;
    for (uint32_t *to = __data_start__; to < __data_end__;)
        *to++ = *from++;
    for (uint32_t *p = __bss_start__; p < __bss_end__;)
        *p++ = 0;
    console_exit(main());
}

/* The exception frame the core pushed: r0-r3, r12, lr, pc, xPSR. */
enum { FRAME_PC = 6 };

static void __attribute__((used, noreturn)) fault_report(const uint32_t *frame)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    console_print("harness: fault: exception ");
    console_print_u32(ipsr & 0x1FFu, 10);
    console_print(" at pc ");
    console_print_u32(frame[FRAME_PC], 16);
    console_print(", CFSR ");
    console_print_u32(SCB_CFSR, 16);
    console_print(", HFSR ");
    console_print_u32(SCB_HFSR, 16);
    console_print("\n");
    console_exit(EXIT_FAULT);
}

/* Naked: hand the stacked frame (on the main stack, the only one we use) to C untouched. */
void Fault_Handler(void)
{
    __asm__ volatile(
        "mrs r0, msp\n\t"
        "b fault_report\n\t");
}
