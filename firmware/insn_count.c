/* QEMU TCG plugin: the exact number of guest instructions of each inference, and of each layer.
 *
 *   qemu-system-arm ... -plugin insn_count.so,begin=0xADDR,end=0xADDR[,layer=0xADDR],out=FILE
 *
 * `begin`/`end` are the entry addresses of the harness's marker functions around MODEL_RUN(),
 * `layer` the entry of the per-layer trace hook (trace builds only), taken from the ELF's
 * symbol table. Counted: every instruction from the entry of the begin marker (inclusive) to
 * the entry of the end marker (exclusive); with `layer`, the same span is cut at each entry
 * of the hook. For every run the plugin appends to FILE:
 *     run <n> insns <instructions> cycles <estimate> flash <accesses>
 *     layer <n> <k> insns <instructions> cycles <estimate> flash <accesses>  (k-th hook call of run n)
 *     tail <n> insns <instructions> cycles <estimate> flash <accesses>       (last hook to end marker)
 *
 * How: every translation block adds its instruction count (and its estimated cycles) to two
 * global counters, inline, when it starts executing; that is cheap and exact as long as blocks
 * run to their end, which they do here (no interrupts, no faults between the markers). A
 * callback on each marker instruction reads the counters, minus the part of its block that
 * has not executed yet.
 *
 * The cycles are an ESTIMATE for a Cortex-M4 with zero-wait-state memory, from a cost per
 * instruction class (see m4_cycles()); they ignore stalls, and mean little on other cores.
 *
 * `flash` counts what pays a flash's wait states on a part without a flash cache (an STM32F4
 * with its ART accelerator and prefetch off): flash is the Cortex-M Code region, addresses
 * below 0x20000000, where every part keeps its code and constants. The model: the flash reads
 * 128-bit lines, and each line of code a block executes is fetched once per execution of the
 * block (a block starts at a branch target, its instructions run in order), and every data
 * access (load) to flash is one read. Each such access stalls the core for the wait states,
 * so cycles at W wait states ~ cycles + W * flash (firmware/runner.py). It is a model: a real
 * flash interface overlaps some of this (prefetch), and a cache hides most of it.
 *
 * Built with the host compiler by mnv2gen (firmware/plugin.py); no QEMU headers needed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * The part of QEMU 7.2's plugin API (include/qemu/qemu-plugin.h, API version 1) used here.
 * Debian ships no header, so it is declared by hand; these types and enums must match 7.2's
 * exactly. (Version 2, in QEMU 8.2+, replaced the inline functions with scoreboards.)
 */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;

typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;

struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                                          void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* ------------------------------------------------------------------------------------------
 * Cortex-M4 cost table (cycles; Cortex-M4 TRM, "Processor instruction timings", zero wait
 * states). P is the pipeline refill after a taken branch (1 to 3 cycles; 2 assumed). A
 * conditional branch backwards is assumed taken (a loop), forwards taken half the time.
 */
enum {
    REFILL = 2,
    COST_ALU = 1,          /* data processing, multiply and MAC (incl. 64-bit), saturate, IT */
    COST_DIV = 7,          /* SDIV/UDIV: 2 to 12 */
    COST_LOAD_STORE = 2,   /* single load/store; 1 when it follows another (pipelined) */
    COST_BRANCH = 1 + REFILL,
    COST_BRANCH_FORWARD = 2,
    COST_TABLE_BRANCH = 2 + REFILL,
    COST_FP_DIV = 14,      /* VDIV, VSQRT */
    COST_FP_MAC = 3,       /* VMLA, VFMA and their negated forms */
};

struct cost {
    unsigned cycles;
    bool load_store_single; /* may pipeline with the next load/store */
};

static unsigned popcount16(uint32_t bits)
{
    return (unsigned)__builtin_popcount(bits & 0xFFFFu);
}

static struct cost cycles(unsigned n)
{
    return (struct cost){n, false};
}

static struct cost load_store_single(void)
{
    return (struct cost){COST_LOAD_STORE, true};
}

/* 16-bit Thumb instructions (Armv7-M ARM, A5.2). */
static struct cost m4_cycles16(uint32_t hw)
{
    if ((hw >> 11) == 0x1C) /* B */
        return cycles(COST_BRANCH);
    if ((hw >> 12) == 0xD) { /* B<cond>, or UDF/SVC */
        unsigned cond = (hw >> 8) & 0xF;
        if (cond >= 0xE)
            return cycles(COST_ALU);
        return cycles((hw & 0x80) ? COST_BRANCH : COST_BRANCH_FORWARD);
    }
    if ((hw >> 12) == 0xC) /* LDM/STM */
        return cycles(1 + popcount16(hw & 0xFF));
    if ((hw >> 12) == 0xB) { /* miscellaneous */
        if ((hw & 0xFE00) == 0xB400) /* PUSH */
            return cycles(1 + popcount16(hw & 0x1FF));
        if ((hw & 0xFE00) == 0xBC00) /* POP, with PC if bit 8 */
            return cycles(1 + popcount16(hw & 0x1FF) + ((hw & 0x100) ? REFILL : 0));
        if ((hw & 0xF500) == 0xB100) /* CBZ/CBNZ: forwards only */
            return cycles(COST_BRANCH_FORWARD);
        return cycles(COST_ALU);
    }
    if ((hw >> 11) == 0x09 || (hw >> 12) == 0x5 || (hw >> 13) == 0x3 || (hw >> 12) == 0x8 ||
        (hw >> 12) == 0x9) /* LDR literal; load/store register, immediate, halfword, SP-relative */
        return load_store_single();
    if ((hw >> 10) == 0x11) { /* special data processing, BX/BLX */
        if ((hw & 0xFF00) == 0x4700)
            return cycles(COST_BRANCH);
        unsigned rd = ((hw >> 4) & 0x8) | (hw & 0x7);
        bool writes_pc = rd == 15 && (hw & 0x0300) != 0x0100; /* ADD/MOV to PC, not CMP */
        return cycles(writes_pc ? COST_BRANCH : COST_ALU);
    }
    return cycles(COST_ALU); /* shifts, add/sub, compare, logic, MULS, ADR, ADD SP */
}

/* Coprocessor space: on these cores, the FPU (and on the Cortex-M55, MVE). */
static struct cost m4_cycles_fp(uint32_t hw1, uint32_t hw2)
{
    if ((hw1 & 0x0E00) == 0x0C00) { /* FP load/store and 64-bit transfers */
        if ((hw1 & 0x0FE0) == 0x0C40)
            return cycles(2); /* VMOV of two core registers */
        if ((hw1 & 0x0F20) == 0x0D00)
            return cycles(COST_LOAD_STORE); /* VLDR/VSTR */
        unsigned words = hw2 & 0xFF;
        return cycles(1 + words); /* VLDM/VSTM/VPUSH/VPOP */
    }
    if ((hw1 & 0x0F00) == 0x0E00 && (hw2 & 0x0E10) == 0x0A00) { /* FP data processing */
        if ((hw1 & 0xFFB0) == 0xEE80 || ((hw1 & 0xFFBF) == 0xEEB1 && (hw2 & 0x00C0) == 0x00C0))
            return cycles(COST_FP_DIV);
        unsigned opc = hw1 & 0xFFB0; /* VMLA/VMLS, VNMLA/VNMLS, VFMA/VFMS, VFNMA/VFNMS */
        if (opc == 0xEE00 || opc == 0xEE10 || opc == 0xEEA0 || opc == 0xEE90)
            return cycles(COST_FP_MAC);
    }
    return cycles(COST_ALU);
}

/* 32-bit Thumb instructions (Armv7-M ARM, A5.3). */
static struct cost m4_cycles32(uint32_t hw1, uint32_t hw2)
{
    unsigned op1 = (hw1 >> 11) & 0x3, op2 = (hw1 >> 4) & 0x7F;
    if (op1 == 1) {
        if ((op2 & 0x64) == 0x00) { /* LDM/STM/PUSH/POP.W; loading PC branches */
            bool loads_pc = (hw1 & 0x0010) && (hw2 & 0x8000);
            return cycles(1 + popcount16(hw2) + (loads_pc ? REFILL : 0));
        }
        if ((op2 & 0x64) == 0x04) { /* dual, exclusive, table branch */
            if ((hw1 & 0xFFF0) == 0xE8D0 && (hw2 & 0xFFE0) == 0xF000)
                return cycles(COST_TABLE_BRANCH);
            if ((hw1 & 0xFFE0) == 0xE840 || (hw1 & 0xFFE0) == 0xE8C0)
                return load_store_single(); /* LDREX/STREX and their byte/halfword forms */
            return cycles(3); /* LDRD/STRD */
        }
        if ((op2 & 0x60) == 0x20)
            return cycles(COST_ALU); /* data processing, shifted register */
        return m4_cycles_fp(hw1, hw2);
    }
    if (op1 == 2) {
        if (!(hw2 & 0x8000))
            return cycles(COST_ALU); /* data processing, immediate */
        unsigned control = (hw2 >> 12) & 0x7;
        if ((control & 0x5) == 0x0) {
            if ((op2 & 0x38) != 0x38) /* B<cond>.W, backwards if the sign bit is set */
                return cycles((hw1 & 0x0400) ? COST_BRANCH : COST_BRANCH_FORWARD);
            return cycles(COST_ALU); /* MSR, MRS, hints, barriers */
        }
        return cycles(COST_BRANCH); /* B.W, BL (and the Armv8.1-M loop instructions) */
    }
    /* op1 == 3 */
    if ((op2 & 0x71) == 0x00)
        return load_store_single(); /* store single */
    if ((op2 & 0x67) == 0x01 || (op2 & 0x67) == 0x03 || (op2 & 0x67) == 0x05) {
        bool to_pc = (hw2 >> 12) == 15;
        if (to_pc && (op2 & 0x67) != 0x05)
            return cycles(COST_ALU); /* PLD, PLI: hints */
        return to_pc ? cycles(COST_LOAD_STORE + REFILL) : load_store_single();
    }
    if ((op2 & 0x70) == 0x20 || (op2 & 0x78) == 0x30)
        return cycles(COST_ALU); /* data processing register; multiply and MAC */
    if ((op2 & 0x78) == 0x38) { /* 64-bit multiply, divide */
        bool divide = ((hw1 & 0xFFF0) == 0xFB90 || (hw1 & 0xFFF0) == 0xFBB0) && (hw2 & 0x00F0) == 0x00F0;
        return cycles(divide ? COST_DIV : COST_ALU);
    }
    return m4_cycles_fp(hw1, hw2);
}

static struct cost m4_cycles(const uint8_t *bytes, size_t size)
{
    uint32_t hw1 = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8;
    if (size < 4)
        return m4_cycles16(hw1);
    return m4_cycles32(hw1, (uint32_t)bytes[2] | (uint32_t)bytes[3] << 8);
}

/* ------------------------------------------------------------------------------------------
 * Counting.
 */
static uint64_t insns_total, cycles_total; /* since start-up, advanced per translation block */
static uint64_t flash_total; /* flash line fetches (per block) and data reads (per access) */

/* The Cortex-M Code region, where flash lives; 128-bit flash lines. */
#define FLASH_END 0x20000000u
#define FLASH_LINE_BYTES 16u

enum marker { MARK_BEGIN, MARK_END, MARK_LAYER, MARKS };
static uint64_t marker_address[MARKS];
static bool has_marker[MARKS];

/* A marker instruction inside a block: how much of the block, already added to the totals
 * when it started, has not executed yet when the marker is reached. */
struct site {
    enum marker kind;
    uint64_t insns_ahead, cycles_ahead, flash_ahead;
};

static FILE *out;
static bool in_run;
static uint64_t runs, layers;
static uint64_t run_insns, run_cycles, run_flash;     /* totals at the begin marker */
static uint64_t mark_insns, mark_cycles, mark_flash;  /* totals at the last cut (begin or layer hook) */

static void print_counts(uint64_t insns, uint64_t cycles_estimate, uint64_t flash)
{
    fprintf(out, " insns %" PRIu64 " cycles %" PRIu64 " flash %" PRIu64 "\n", insns, cycles_estimate, flash);
}

static void on_marker(unsigned int vcpu, void *userdata)
{
    const struct site *site = userdata;
    uint64_t insns = insns_total - site->insns_ahead, cyc = cycles_total - site->cycles_ahead;
    uint64_t flash = flash_total - site->flash_ahead;
    (void)vcpu;
    switch (site->kind) {
    case MARK_BEGIN:
        in_run = true;
        layers = 0;
        run_insns = mark_insns = insns;
        run_cycles = mark_cycles = cyc;
        run_flash = mark_flash = flash;
        break;
    case MARK_LAYER:
        if (!in_run)
            break;
        fprintf(out, "layer %" PRIu64 " %" PRIu64, runs, layers);
        print_counts(insns - mark_insns, cyc - mark_cycles, flash - mark_flash);
        ++layers;
        mark_insns = insns;
        mark_cycles = cyc;
        mark_flash = flash;
        break;
    case MARK_END:
        if (!in_run)
            break;
        if (layers > 0) {
            fprintf(out, "tail %" PRIu64, runs);
            print_counts(insns - mark_insns, cyc - mark_cycles, flash - mark_flash);
        }
        fprintf(out, "run %" PRIu64, runs);
        print_counts(insns - run_insns, cyc - run_cycles, flash - run_flash);
        fflush(out); /* complete even if QEMU is killed later */
        in_run = false;
        ++runs;
        break;
    default:
        break;
    }
}

/* The estimated cycles from the start of a block to each of its n instructions: before[i]
 * for instruction i, before[n] for the whole block. */
static void block_cycles(const struct qemu_plugin_tb *tb, size_t n, uint64_t *before)
{
    bool previous_load_store = false;
    before[0] = 0;
    for (size_t i = 0; i < n; ++i) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        struct cost c = m4_cycles(qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn));
        if (c.load_store_single && previous_load_store)
            c.cycles = 1; /* neighbours overlap their address and data phases */
        previous_load_store = c.load_store_single;
        before[i + 1] = before[i] + c.cycles;
    }
}

/* The flash lines of code a block fetches before each of its n instructions: lines[i]
 * before instruction i, lines[n] for the whole block (none for code outside flash). */
static void block_flash_lines(const struct qemu_plugin_tb *tb, size_t n, uint64_t *lines)
{
    uint64_t last_line = UINT64_MAX;
    lines[0] = 0;
    for (size_t i = 0; i < n; ++i) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t first = qemu_plugin_insn_vaddr(insn), end = first + qemu_plugin_insn_size(insn);
        uint64_t fetched = 0;
        if (first < FLASH_END) {
            for (uint64_t line = first / FLASH_LINE_BYTES; line <= (end - 1) / FLASH_LINE_BYTES; ++line) {
                if (line != last_line)
                    ++fetched;
                last_line = line;
            }
        }
        lines[i + 1] = lines[i] + fetched;
    }
}

static void on_load(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata)
{
    (void)vcpu;
    (void)info;
    (void)userdata;
    if (vaddr < FLASH_END)
        ++flash_total;
}

static void watch_marker(struct qemu_plugin_insn *insn, enum marker kind, uint64_t insns_ahead,
                         uint64_t cycles_ahead, uint64_t flash_ahead)
{
    /* Never freed: blocks are rarely retranslated, and QEMU may still run the old one. */
    struct site *site = malloc(sizeof *site);
    if (site == NULL)
        abort();
    *site = (struct site){kind, insns_ahead, cycles_ahead, flash_ahead};
    qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, site);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t before[n + 1], lines[n + 1];
    (void)id;
    block_cycles(tb, n, before);
    block_flash_lines(tb, n, lines);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns_total, n);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &cycles_total, before[n]);
    if (lines[n] > 0)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &flash_total, lines[n]);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_mem_cb(insn, on_load, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_R, NULL);
        for (int kind = 0; kind < MARKS; ++kind) {
            if (has_marker[kind] && vaddr == marker_address[kind])
                watch_marker(insn, (enum marker)kind, n - i, before[n] - before[i], lines[n] - lines[i]);
        }
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    if (in_run)
        fprintf(out, "unfinished %" PRIu64 "\n", runs);
    fclose(out);
}

/* "key=ADDRESS" (0x... for hex); false if `arg` is not `key` or the address is malformed. */
static bool parse_address(const char *arg, const char *key, uint64_t *value)
{
    size_t len = strlen(key);
    if (strncmp(arg, key, len) != 0 || arg[len] != '=')
        return false;
    char *end;
    *value = strtoull(arg + len + 1, &end, 0) & ~(uint64_t)1; /* drop the Thumb bit */
    return *end == '\0' && end != arg + len + 1;
}

static bool parse_argument(const char *arg, const char **out_path)
{
    static const char *const keys[MARKS] = {"begin", "end", "layer"};
    for (int kind = 0; kind < MARKS; ++kind) {
        if (parse_address(arg, keys[kind], &marker_address[kind]))
            return has_marker[kind] = true;
    }
    if (strncmp(arg, "out=", 4) != 0)
        return false;
    *out_path = arg + 4;
    return true;
}

static int fail(const char *message)
{
    qemu_plugin_outs("insn_count: ");
    qemu_plugin_outs(message);
    qemu_plugin_outs("\n");
    return -1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *out_path = NULL;
    (void)info;
    for (int i = 0; i < argc; ++i) {
        if (!parse_argument(argv[i], &out_path))
            return fail("bad argument; expected begin=0xADDRESS, end=0xADDRESS, [layer=0xADDRESS,] out=FILE");
    }
    if (!has_marker[MARK_BEGIN] || !has_marker[MARK_END] || out_path == NULL)
        return fail("begin=, end= and out= are required");
    if ((out = fopen(out_path, "w")) == NULL)
        return fail("cannot open the out= file");
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
