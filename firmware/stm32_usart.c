/* The console (console.h) of STM32F4 boards: USART1, TX on PA9 (alternate function 7), at
 * 115200 baud 8N1 from the 16 MHz HSI clock the chip runs on after reset. QEMU's
 * netduinoplus2 wires USART1 to its first serial port, so the same image prints under QEMU
 * and on the chip (a USB-serial adapter on PA9). No semihosting: no debugger needed. */
#include <stdint.h>

#include "console.h"

#define REG(address) (*(volatile uint32_t *)(address))
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB2ENR REG(0x40023844u)
#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRH REG(0x40020024u)
#define USART1_SR REG(0x40011000u)
#define USART1_DR REG(0x40011004u)
#define USART1_BRR REG(0x40011008u)
#define USART1_CR1 REG(0x4001100Cu)

#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB2ENR_USART1EN (1u << 4)
#define MODER_ALTERNATE 2u
#define AF_USART1 7u
#define USART_SR_TXE (1u << 7)
#define USART_SR_TC (1u << 6)
#define USART_CR1_UE (1u << 13)
#define USART_CR1_TE (1u << 3)
#define HSI_HZ 16000000u
#define BAUD 115200u
#define TX_PIN 9u

static void usart_init(void)
{
    static int ready;
    if (ready)
        return;
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    GPIOA_MODER = (GPIOA_MODER & ~(3u << (2 * TX_PIN))) | (MODER_ALTERNATE << (2 * TX_PIN));
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << (4 * (TX_PIN - 8)))) | (AF_USART1 << (4 * (TX_PIN - 8)));
    USART1_BRR = (HSI_HZ + BAUD / 2) / BAUD; /* 16x oversampling: mantissa and fraction in one */
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE;
    ready = 1;
}

void console_print(const char *text)
{
    usart_init();
    for (; *text != '\0'; ++text) {
        while (!(USART1_SR & USART_SR_TXE))
            ;
        USART1_DR = (uint8_t)*text;
    }
}

void console_exit(int code)
{
    console_print("harness: exit ");
    console_print_u32((uint32_t)code, 10);
    console_print("\n");
    while (!(USART1_SR & USART_SR_TC))
        ;
    for (;;)
        __asm__ volatile("wfi");
}
