/* Host harness for generated models.
 *
 * Protocol, all little-endian: stdin carries the 4-byte magic "MNV2", a uint32 count N, then
 * N inputs of INPUT_BYTES each; for every input the harness writes OUTPUT_BYTES to stdout.
 * Built with -DHARNESS_TRACE, it also appends every layer's output to the file named by argv[1]:
 * int32 layer, int32 byte count, then the bytes.
 * Built with -DHARNESS_TRACE_ROWS instead (and the model's row trace, see host_sim/build.py
 * row_trace_flags), it writes to that file, as text lines, every row the pipeline engine
 * reads ("read BUFFER ROW") and writes ("write STAGE BUFFER ROW"), each layer closed by
 * "layer NUMBER".
 *
 * The build passes the generated names: -DMODEL_HEADER="\"mnv2_model.h\"" -DMODEL_INPUT=...
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include MODEL_HEADER

#ifdef HARNESS_TRACE
#define HARNESS_TRACE_FILE
static FILE *trace_file;

void TRACE_HOOK(int32_t layer, const void *data, int32_t bytes)
{
    fwrite(&layer, sizeof layer, 1, trace_file);
    fwrite(&bytes, sizeof bytes, 1, trace_file);
    fwrite(data, 1, (size_t)bytes, trace_file);
}
#endif

#ifdef HARNESS_TRACE_ROWS
#define HARNESS_TRACE_FILE
static FILE *trace_file;

void TRACE_HOOK(int32_t layer, const void *data, int32_t bytes)
{
    (void)data;
    (void)bytes;
    fprintf(trace_file, "layer %ld\n", (long)layer);
}

void TRACE_ROW_READ_HOOK(int32_t buffer, int32_t row)
{
    fprintf(trace_file, "read %ld %ld\n", (long)buffer, (long)row);
}

void TRACE_ROW_WRITE_HOOK(int32_t stage, int32_t buffer, int32_t row)
{
    fprintf(trace_file, "write %ld %ld %ld\n", (long)stage, (long)buffer, (long)row);
}
#endif

#ifdef MODEL_SET_ARENA
/* C generated with --arena external takes its arena from the caller: this one, handed over
 * once before the first input (the generated header's alignment is that of a double). */
static union {
    uint8_t bytes[MODEL_ARENA_BUFFER_BYTES];
    double align;
} arena_buffer;
#endif

static int read_exact(void *buffer, size_t bytes)
{
    return fread(buffer, 1, bytes, stdin) == bytes;
}

int main(int argc, char **argv)
{
    char magic[4];
    uint32_t count, i;
#ifdef HARNESS_TRACE_FILE
    if (argc < 2 || !(trace_file = fopen(argv[1], "wb"))) {
        fprintf(stderr, "harness: trace builds need a trace file argument\n");
        return 3;
    }
#else
    (void)argc;
    (void)argv;
#endif
    if (!read_exact(magic, sizeof magic) || memcmp(magic, "MNV2", 4) != 0 || !read_exact(&count, sizeof count)) {
        fprintf(stderr, "harness: bad request header\n");
        return 3;
    }
#ifdef MODEL_SET_ARENA
    if (MODEL_SET_ARENA(&arena_buffer, sizeof arena_buffer) != 0) {
        fprintf(stderr, "harness: the model refused the arena\n");
        return 4;
    }
#endif
    for (i = 0; i < count; ++i) {
        if (!read_exact(MODEL_INPUT(), MODEL_INPUT_BYTES)) {
            fprintf(stderr, "harness: input %u is truncated\n", (unsigned)i);
            return 3;
        }
        if (MODEL_RUN() != 0) {
            fprintf(stderr, "harness: run failed on input %u\n", (unsigned)i);
            return 4;
        }
        fwrite(MODEL_OUTPUT(), 1, MODEL_OUTPUT_BYTES, stdout);
    }
#ifdef HARNESS_TRACE_FILE
    fclose(trace_file);
#endif
    return fflush(stdout) == 0 ? 0 : 5;
}
