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
 * For C generated with --input rows it also passes -DMODEL_RUN_ROWS=... (see
 * verification/harness.py model_defines): each input is then read into a frame here, outside
 * the arena, and fill_from_frame() hands the model the rows it asks for, checking that it asks
 * for every row once, in order, at most MODEL_INPUT_MAX_FILL_ROWS at a time. Its inputs are
 * what fill writes: MODEL_INPUT_ROWS rows of MODEL_INPUT_ROW_BYTES (sensor pixels, if the C
 * was generated with --input-format).
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

#ifdef MODEL_RUN_ROWS
typedef struct {
    const MODEL_ROW_T *frame;
    int32_t next_row; /* the row the model should ask for next */
    int broken;       /* it asked for something else */
} frame_source;

static int fill_from_frame(void *ctx, int32_t first_row, int32_t row_count, MODEL_ROW_T *dst)
{
    frame_source *source = (frame_source *)ctx;
    if (first_row != source->next_row || row_count < 1 || row_count > MODEL_INPUT_MAX_FILL_ROWS ||
        first_row + row_count > MODEL_INPUT_ROWS) {
        source->broken = 1;
        return 1;
    }
    memcpy(dst, source->frame + (size_t)first_row * MODEL_INPUT_ROW_BYTES, (size_t)row_count * MODEL_INPUT_ROW_BYTES);
    source->next_row += row_count;
    return 0;
}

#define FRAME_BYTES (MODEL_INPUT_ROWS * MODEL_INPUT_ROW_BYTES)
static MODEL_ROW_T frame[FRAME_BYTES];

/* One inference on the rows of `frame`: 0 when the model asked for every row once, in order. */
static int run_on_frame(void)
{
    frame_source source = {frame, 0, 0};
    const int status = MODEL_RUN_ROWS(fill_from_frame, &source);
    if (source.broken || source.next_row != MODEL_INPUT_ROWS) {
        fprintf(stderr, "harness: the model asked for rows out of order (next expected: %ld)\n",
                (long)source.next_row);
        return -1;
    }
    return status;
}
#define INPUT_BUFFER() frame
#define RUN() run_on_frame()
#else
#define FRAME_BYTES MODEL_INPUT_BYTES
#define INPUT_BUFFER() MODEL_INPUT()
#define RUN() MODEL_RUN()
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
        if (!read_exact(INPUT_BUFFER(), FRAME_BYTES)) {
            fprintf(stderr, "harness: input %u is truncated\n", (unsigned)i);
            return 3;
        }
        if (RUN() != 0) {
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
