"""The `mnv2gen` command: int8 MobileNet .tflite models into C for Cortex-M, proven bit-exact.

    mnv2gen compile model.tflite --out DIR       write the C
    mnv2gen verify  model.tflite [-n N]          compile, build on the host, compare N inputs with TFLite
    mnv2gen run     model.tflite [--board B]     ...or on a Cortex-M board under QEMU, measured
    mnv2gen report  model.tflite [--html F]      the memory plan, step by step, without writing C
    mnv2gen demo                                 the whole pipeline on the bundled digits model

Exit codes: 0 success; 1 outputs were compared and the generated C's differ from TFLite's;
2 a user error (bad model, unsupported op, bad flag or path) with a one-line message and no
traceback; 3 the firmware crashed or hung under QEMU, so nothing could be compared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext

from . import __version__
from .codegen.render import PREFIX_PATTERN, REFERENCES, ArenaMode, Options, check_section, output_names
from .targets import TARGETS
from .errors import EXIT_FAILED, EXIT_MISMATCH, EXIT_OK, EXIT_USER_ERROR, UserError
from .outputs import check_output_file, check_output_folder, is_firmware_image, is_png
from .firmware.boards import BOARDS, emulated_board, get_board
from .firmware.chips import CHIPS, get_chip
from .passes import OPTIMIZE_LEVELS, OptimizeLevel
from .plan.streaming import InputMode
from .preprocess import PixelFormat, Resize


def _prefix(value: str) -> str:
    if not PREFIX_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid prefix: use a lowercase C identifier of up to 31 "
            "characters (letters, digits, underscores; starting with a letter)")
    return value


def _section(value: str) -> str:
    """A linker section name that can go into the C as it is."""
    try:
        return check_section(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(low: int, high: int, what: str):
    """An argparse type: a whole number from `low` to `high`, refused in one line saying so."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or not low <= n <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, a whole number from {low:,} to {high:,}; "
                                             f"got {value!r}")
        return n
    return parse


MAX_INPUTS = 10_000  # random inputs per verification (each is a model input held in memory)
_inputs = _whole_number(1, MAX_INPUTS, "the number of random inputs")
_seed = _whole_number(0, 2**32 - 1, "a seed")
_budget = _whole_number(1, 2**40, "the arena budget in bytes")

class UsageError(UserError):
    """A flag or argument argparse refused."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that says what is allowed (argparse's message
    names the argument and its choices), not the whole usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnv2gen", description=__doc__.split("\n\n")[0],
                     epilog="Run `mnv2gen COMMAND --help` for a command's flags.")
    parser.add_argument("--version", action="version", version=f"mnv2gen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_command(name: str, help_text: str, out_help: str, target_help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("model", help="the int8 .tflite model")
        sub.add_argument("--out", required=name == "compile", help=out_help)
        sub.add_argument("--prefix", type=_prefix, default="mnv2",
                         help="prefix of every public symbol, macro and file name: a lowercase C "
                              "identifier of up to 31 characters (default: mnv2)")
        sub.add_argument("--target", choices=TARGETS, help=target_help)
        sub.add_argument("--reference", choices=REFERENCES, default="tflite",
                         help="whose arithmetic to equal where TFLite's reference kernels and TFLite "
                              "Micro differ (default: tflite)")
        sub.add_argument("--json", action="store_true", help="print the result, or the error, as one JSON object")
        sub.add_argument("--quiet", action="store_true", help="print nothing on success")
        add_schedule_options(sub)
        return sub

    def add_schedule_options(sub: argparse.ArgumentParser) -> None:
        # The levels by name: argparse's error lists choices by repr.
        sub.add_argument("--optimize", choices=[str(level) for level in OPTIMIZE_LEVELS],
                         default=OptimizeLevel.MEMORY,
                         help="memory: fuse the stem and inverted residuals into row pipelines, the "
                              "least RAM; balanced: fuse each inverted residual; speed: layer by layer "
                              "(all bit-exact; default: memory)")
        sub.add_argument("--memory-budget", type=_budget, metavar="BYTES",
                         help="fail unless the arena fits in BYTES (a positive whole number)")
        sub.add_argument("--quantized-input", action="store_true",
                         help="ONNX models: the C's input is the first QuantizeLinear's output (int8 or "
                              "uint8, NHWC; the README gives its scale and zero point), not the float input")
        sub.add_argument("--input", choices=[str(mode) for mode in InputMode], default=InputMode.FRAME,
                         help="frame: the caller writes the whole input at <prefix>_input(), then calls "
                              "<prefix>_run(); rows: <prefix>_run_rows(fill, ctx) pulls input rows from "
                              "the caller's function as the first layers need them, so the arena holds "
                              "a few rows, never the frame (default: frame)")
        sub.add_argument("--input-format", choices=[str(f) for f in PixelFormat],
                         help="with --input rows: fill writes sensor pixels in this format (uint8 per "
                              "channel; gray8 feeds every channel), converted to the model's input by "
                              "compile-time tables, exactly as quantizing the normalized float32 pixel")
        sub.add_argument("--normalize", metavar="EXPR",
                         help="with --input-format: the float normalization the model was trained with, "
                              "x/255, (x/127.5)-1, (x-M)/S or mean=M1,M2,M3;std=S1,S2,S3 (default: x)")
        sub.add_argument("--input-scale-from", metavar="WxH",
                         help="with --input-format: fill delivers rows of a WxH sensor frame (e.g. 160x120), "
                              "resized to the model's input as its rows are needed")
        sub.add_argument("--input-resize", choices=[str(r) for r in Resize],
                         help="with --input-scale-from: nearest, or bilinear in 8-bit fixed point "
                              "(default: bilinear)")

    def add_placement_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--weights-section", type=_section, metavar="NAME",
                         help="put the weight arrays in linker section NAME (e.g. external QSPI flash); "
                              "letters, digits, _ and ., up to 63")
        sub.add_argument("--arena-section", type=_section, metavar="NAME",
                         help="put the static arena in linker section NAME (e.g. .ccmram, DTCM); the "
                              "start-up code must zero it like .bss")
        sub.add_argument("--arena", choices=[str(mode) for mode in ArenaMode], default=ArenaMode.STATIC,
                         help="static: the C holds its arena; external: the caller hands a buffer to "
                              "<prefix>_set_arena() before use, so models can share one (default: static)")

    def add_inputs_options(sub: argparse.ArgumentParser, default: int) -> None:
        sub.add_argument("-n", "--inputs", type=_inputs, default=default,
                         help=f"random inputs to compare, besides the all-min and all-max ones (1 to "
                              f"{MAX_INPUTS:,}; default: {default})")
        sub.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (0 or more; default: 0)")

    temporary = "folder for the generated C files (default: a temporary folder, deleted afterwards)"
    compile_ = model_command("compile", "compile a .tflite model into C", "folder for the generated C files",
                             "the core the C is for: host and cortex-m0plus are portable C; cortex-m4/m7/m33 "
                             "use the DSP extension, cortex-m55/m85 Helium (ONNX models: the DSP kernels) (default: host)")
    add_placement_options(compile_)
    compile_.add_argument("--board", choices=list(CHIPS), metavar="BOARD",
                          help="check that the model fits this part's flash and RAM (exit 2 with the numbers if "
                               f"not), and default --target to its core: {', '.join(CHIPS)}")
    verify = model_command("verify", "compile, build on this machine and compare with TFLite, bit for bit",
                           temporary, "only host: verify runs the C on this machine (for a Cortex-M core, "
                           "use `mnv2gen run --board`)")
    add_placement_options(verify)
    add_inputs_options(verify, default=100)
    verify.add_argument("--no-tflm", action="store_true", help="skip the TFLite Micro comparison")
    verify.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    report = commands.add_parser("report", help="print the memory plan: live bytes per step, the "
                                 "paper's bound, our arena beside TFLite Micro's, each schedule's cost",
                                 description="Print the memory plan of a model without writing C.")
    report.add_argument("model", help="the int8 .tflite model")
    report.add_argument("--json", action="store_true", help="print the report, or the error, as one JSON object")
    report.add_argument("--quiet", action="store_true", help="print nothing on success")
    report.add_argument("--no-tflm", action="store_true", help="skip measuring TFLite Micro's arena")
    report.add_argument("--html", metavar="FILE", help="also write the report as a static HTML page "
                        "(a chart of live memory and a table of every step; no scripts, viewable offline)")
    report.add_argument("--png", metavar="FILE", help="also write a screenshot of that page "
                        "(needs Chromium)")
    add_schedule_options(report)
    run = model_command("run", "compile, build for a Cortex-M board, run under QEMU, compare with TFLite "
                        "bit for bit, and measure instructions, sizes and stack", temporary,
                        "the board's core, which is the default; any other is refused")
    run.add_argument("--board", choices=list(BOARDS), default="mps2-an386",
                     help="mps2-an386 (Cortex-M4), mps2-an500 (M7), mps2-an505 (M33), mps3-an547 (M55) run "
                          "under QEMU, and mps2-an385 (an M3) runs the Cortex-M0+'s Armv6-M code; "
                          "netduinoplus2 (STM32F405) too, as the flashable image (with --out: its .elf, "
                          ".bin, .hex), output on its USART; "
                          "stm32f746 and stm32h743 only check that the model fits (default: mps2-an386)")
    add_placement_options(run)
    add_inputs_options(run, default=10)
    layers = run.add_mutually_exclusive_group()
    layers.add_argument("--profile", action="store_true",
                        help="after the per-layer instruction counts, the costliest layers first with their "
                             "running share of the inference")
    layers.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer instruction counts (a second, traced build)")
    demo = commands.add_parser("demo", help="on the bundled trained digits model: compile, prove bit-exact on "
                               "the host (and on an emulated Cortex-M4 if the Arm toolchain and QEMU are "
                               "installed), compare the C's test accuracy with the .tflite's, show memory and sizes",
                               description="Run the whole pipeline on the bundled trained model.")
    demo.add_argument("--model", help="the model (default: the digits model shipped with mnv2gen)")
    demo.add_argument("--tests", help="the quantized test set, .npz with x and y (default: the shipped "
                      "digits_test.npz with the default model, else digits_test.npz beside the model)")
    demo.add_argument("--out", default="build/demo", help="folder for the generated C (default: build/demo)")
    demo.add_argument("-n", "--inputs", type=_inputs, default=20,
                      help=f"random inputs to verify, besides the all-min and all-max ones (1 to "
                           f"{MAX_INPUTS:,}; default: 20)")
    demo.add_argument("--no-firmware", action="store_true", help="skip the emulated Cortex-M4")
    demo.add_argument("--camera", action="store_true",
                      help="also the streamed builds (--input rows): fed the model's rows (outputs equal to the "
                           "frame API's), and fed a simulated RGB565 camera at 160x120, resized to 96x96 in the C "
                           "(outputs equal to TFLite on the Python reference's input)")
    demo.add_argument("--json", action="store_true", help="print the result, or the error, as one JSON object")
    demo.add_argument("--quiet", action="store_true", help="print nothing on success (no progress either)")
    return parser


def _check_out(args) -> None:
    """The output folder can take the generated files, before any work."""
    if args.out is not None:
        check_output_folder(args.out, output_names(args.prefix), [args.model])


def _compile(args, out: str, check=None) -> tuple[dict, object]:
    """Compile and write the C to `out`; `check(result)`, if given, runs before anything is
    written (and may refuse with a UserError)."""
    from .compiler import compile_model, write_files

    placement = {name: getattr(args, name) for name in ("weights_section", "arena_section", "arena")
                 if hasattr(args, name)}  # compile, verify and run take them
    try:
        options = Options(prefix=args.prefix, target=args.target, reference=args.reference,
                          optimize=args.optimize, memory_budget=args.memory_budget,
                          quantized_input=args.quantized_input, input=args.input,
                          input_format=args.input_format, normalize=args.normalize,
                          input_scale_from=args.input_scale_from, input_resize=args.input_resize, **placement)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    start = time.perf_counter()
    result = compile_model(args.model, options)
    if check is not None:
        check(result, options)
    try:
        written = write_files(result.files, out)
    except OSError as exc:
        raise UserError(f"cannot write the output folder: {exc}", source=out) from None
    summary = {
        "model": args.model,
        "out": args.out,  # None: a temporary folder, deleted afterwards
        "files": [p.name for p in written],
        "ops": result.model_ops,
        "steps": len(result.plan.steps),
        "arena_bytes": result.arena_bytes,
        "compile_seconds": round(time.perf_counter() - start, 3),
    }
    return summary, result


def _out_folder(args):
    """The --out folder, or a temporary one for the duration of the command."""
    if args.out is not None:
        return nullcontext(args.out)
    return tempfile.TemporaryDirectory(prefix="mnv2gen-out-")


def _print(args, summary: dict, lines: list[str], code: int = EXIT_OK) -> int:
    if args.json:
        print(json.dumps({"ok": code == EXIT_OK, "exit_code": code, **summary}, indent=2))
    elif not args.quiet or code != EXIT_OK:
        print("\n".join(lines))
    return code


def _ops_text(summary: dict) -> str:
    steps = summary["steps"]
    return f"{summary['ops']} ops in {steps} step{'s' if steps != 1 else ''}"


def cmd_compile(args) -> int:
    chip = get_chip(args.board) if args.board else None
    args.target = args.target or (chip.target if chip else "host")
    if chip and args.target not in ("host", chip.target):
        raise UserError(f"--target {args.target} cannot run on {chip.name} ({chip.core}); use --target "
                        f"{chip.target} (its default) or host")
    _check_out(args)
    fit_lines = []

    def check_fit(result, options) -> None:
        fit_lines.extend(_fit_lines(chip, result, options))

    summary, _ = _compile(args, args.out, check_fit if chip else None)
    if chip:
        summary["fit"] = fit_lines
    return _print(args, summary, [
        f"compiled {summary['model']}: {_ops_text(summary)} -> {len(summary['files'])} files in {summary['out']}",
        f"arena: {summary['arena_bytes']:,} bytes",
        *fit_lines,
    ])


def _fit_lines(chip, result, options) -> list[str]:
    """Whether the compiled model fits `chip` (a UserError with the numbers if not)."""
    from .firmware.chips import check_fit, code_bytes, fit_needs, weights_bytes

    needs = fit_needs(chip, weights=weights_bytes(result.files, options.prefix),
                      code=code_bytes(result.files, options.prefix, chip),
                      arena=result.arena_bytes, weights_placed=options.weights_section is not None,
                      arena_placed=options.arena_section is not None)
    placed = [(what, section) for what, section in (("weights", options.weights_section),
                                                    ("arena", options.arena_section)) if section]
    return check_fit(chip, needs) + [f"  the {what} in section {section}: not counted against the chip's regions"
                                     for what, section in placed]


def _check_verify_target(args) -> None:
    if args.target not in (None, "host"):
        board = emulated_board(args.target)
        elsewhere = (f"run the {args.target} C under QEMU: mnv2gen run {args.model} --board {board.name}" if board
                     else f"QEMU emulates no {args.target}: compile --target {args.target} and build it for your board")
        raise UserError(f"verify builds and runs the C on this machine, which cannot run --target "
                        f"{args.target} code; verify --target host, or {elsewhere}")
    args.target = "host"


def cmd_verify(args) -> int:
    from .frontend import is_onnx
    from .verification import oracle
    from .verification.host import verify

    _check_verify_target(args)
    _check_out(args)
    if is_onnx(args.model):
        oracle.require_onnxruntime()
    else:
        oracle.require_tflite()
    if args.reference == "tflm":
        oracle.require_tflm()
    with _out_folder(args) as out:
        summary, result = _compile(args, out)
        report = verify(args.model, result, out, count=args.inputs, seed=args.seed,
                        use_tflm=not args.no_tflm, sanitize=args.sanitize, prefix=args.prefix,
                        reference=args.reference)
    if report.compared == 0:
        raise UserError(f"the reference ({args.reference}) aborted on every input, so nothing could be "
                        "compared", source=args.model)
    summary.update(inputs=report.inputs, matched_tflite=report.matched_tflite,
                   matched_tflm=report.matched_tflm, bit_exact=report.bit_exact,
                   tflite_aborted=report.tflite_aborted, tflm_aborted=report.tflm_aborted,
                   distinct_outputs=report.distinct_outputs, warnings=report.warnings,
                   paper_bound_bytes=result.paper_bound,
                   tflm_arena_bytes=report.tflm_arena.get("arena_total_bytes"))
    if report.first_mismatch:
        summary["first_mismatch"] = report.first_mismatch
    if report.reference == "onnxruntime":  # one reference: no TFLite or TFLite Micro figures
        for key in ("matched_tflite", "matched_tflm", "tflite_aborted", "tflm_aborted", "tflm_arena_bytes"):
            summary.pop(key)
        summary.update(reference="onnxruntime", oracle=report.oracle, matched_onnxruntime=report.matched_tflite,
                       onnxruntime_aborted=report.tflite_aborted)
    if report.warnings and not args.json:
        print("\n".join(f"mnv2gen: warning: {w}" for w in report.warnings), file=sys.stderr)
    return _print(args, summary, _verify_lines(report, result),
                  EXIT_OK if report.bit_exact else EXIT_MISMATCH)


def _verify_lines(report, result) -> list[str]:
    from .verification.host import divergence_note

    def aborted(count: int) -> str:
        return f"; it aborted on {count} inputs, which cannot be compared" if count else ""

    if report.reference == "onnxruntime":
        lines = [f"ONNX Runtime: {report.matched_tflite}/{report.inputs} outputs identical (the reference: "
                 f"{report.oracle})" + aborted(report.tflite_aborted)]
    elif report.tflite_note:
        lines = [f"TFLite reference kernels: not compared ({report.tflite_note})"]
    else:
        lines = [f"TFLite reference kernels: {report.matched_tflite}/{report.inputs} outputs identical"
                 + (" (the reference)" if report.reference == "tflite" else "") + aborted(report.tflite_aborted)]
    if report.matched_tflm is not None:
        lines.append(f"TFLite Micro:             {report.matched_tflm}/{report.inputs} outputs identical"
                     + (" (the reference)" if report.reference == "tflm" else "") + aborted(report.tflm_aborted))
    elif report.tflm_note:
        lines.append(f"TFLite Micro: not compared ({report.tflm_note})")
    other_matched = report.matched_tflm if report.reference == "tflite" else report.matched_tflite
    if other_matched is not None and other_matched != report.inputs and not report.tflite_note:
        note = divergence_note(result.graph, report.reference)
        lines.append(f"note: {note}" if note else "note: the two references disagree on this model")
    lines += _memory_lines(result, report)
    if report.first_mismatch:
        lines.append(f"first difference: {report.first_mismatch}")
    lines.append("bit-exact" if report.bit_exact else "MISMATCH")
    return lines


def _memory_lines(result, report) -> list[str]:
    lines = [f"arena: {result.arena_bytes:,} bytes (all activations, input and output)",
             f"paper bound M(G): {result.paper_bound:,} bytes (set by {result.paper_bound_op})"]
    total = report.tflm_arena.get("arena_total_bytes")
    if total:
        head = report.tflm_arena.get("arena_head_bytes", 0)
        lines.append(f"TFLite Micro arena: {total:,} bytes ({head:,} activations); "
                     f"ours is {result.arena_bytes / total:.2f}x")
    return lines


def cmd_run(args) -> int:
    from .firmware.runner import FirmwareFailed
    from .frontend import is_onnx
    from .verification import oracle
    from .verification.board import run_on_board

    board = get_board(args.board)
    if args.target not in (None, board.core):
        raise UserError(f"--target {args.target} is not the core of board {board.name} ({board.core}); "
                        "leave --target out, the board sets it")
    args.target = board.core
    _check_out(args)
    if args.out is not None and board.flashable:
        check_output_folder(args.out, _image_names(args.prefix, board), [args.model], generated=is_firmware_image)
    if board.runnable and args.reference == "tflm":
        oracle.require_tflm()
    elif board.runnable and is_onnx(args.model):
        oracle.require_onnxruntime()
    elif board.runnable:
        oracle.require_tflite()
    with _out_folder(args) as out:
        summary, result = _compile(args, out)
        try:
            report = run_on_board(args.model, result, out, board, count=args.inputs, seed=args.seed,
                                  prefix=args.prefix, per_layer=not args.no_layers, reference=args.reference,
                                  image_dir=args.out)
        except FirmwareFailed as exc:
            return _print(args, {**summary, "error": f"the firmware failed: {exc}"},
                          [f"mnv2gen: the firmware failed, so nothing was compared: {exc}"], EXIT_FAILED)
    summary.update(report.summary())
    lines = _firmware_lines(report) + (_profile_lines(report) if args.profile else []) + _image_lines(report)
    return _print(args, summary, lines, EXIT_MISMATCH if report.bit_exact is False else EXIT_OK)


def _image_names(prefix: str, board) -> list[str]:
    """The firmware images `run --out` keeps for a flashable board (see run_on_board)."""
    return [f"{prefix}_{board.name}{suffix}" for suffix in (".elf", ".bin", ".hex")]


def _image_lines(report) -> list[str]:
    """Where the flashable image is and how to flash it, or how to keep it."""
    if not report.board.flashable:
        return []
    if not report.images:
        return ["the image is not kept: give --out DIR to keep its .elf, .bin and .hex"]
    return ([f"image (the one run above): {', '.join(str(path) for path in report.images)}", "flash it with one of:"]
            + [f"  {command}" for command in report.board.flash_commands(str(report.images[0]))])


PROFILE_LAYERS = 10


def _profile_lines(report) -> list[str]:
    """The layers that cost the most, with the running share of the whole inference: where
    the instructions go, and how many layers hold most of them."""
    if not report.layers:
        return []
    total = sum(layer.instructions for layer in report.layers)
    lines = [f"costliest layers ({min(PROFILE_LAYERS, len(report.layers))} of {len(report.layers)}):"]
    running = 0
    for layer in sorted(report.layers, key=lambda l: -l.instructions)[:PROFILE_LAYERS]:
        running += layer.instructions
        per_mac = f"{layer.instructions / layer.macs:5.2f} instr/MAC  " if layer.macs else " " * 17
        lines.append(f"  layer {layer.layer:3d} {layer.instructions:>13,}  running {100 * running / total:5.1f}%  "
                     f"{per_mac}{layer.op}")
    return lines


def _firmware_lines(report) -> list[str]:
    board, sizes = report.board, report.sizes
    lines = [f"board: {board.name} ({board.description})",
             *([f"note: {board.stand_in}"] if board.stand_in else []),
             f"flash: {sizes['flash_bytes']:,} bytes = weights {sizes['weights_bytes']:,} + code and "
             f"other constants {sizes['code_bytes']:,}"
             + (f" + the linked test inputs {sizes['test_inputs_bytes']:,}" if sizes["test_inputs_bytes"] else "")
             + f" (.text {sizes['text_bytes']:,}, "
             f".rodata {sizes['rodata_bytes']:,}, .data {sizes['data_bytes']:,})",
             f"RAM: arena {report.arena_bytes:,} bytes; .data + .bss "
             f"{sizes['data_bytes'] + sizes['bss_bytes']:,}; stack reserved {sizes['stack_reserved_bytes']:,}"]
    if report.bit_exact is None:
        return lines + ["no emulator for this board: built and checked that it fits, nothing run"]
    summary = report.summary()
    lines += [f"stack used by one inference (high-water mark): {report.stack_bytes:,} bytes",
              f"instructions per inference: {report.instructions_per_inference:,} (exact; "
              f"fewest over the inputs {summary['instructions_min']:,})"]
    if summary["cycles_estimate_m4"] is not None:
        lines.append(f"Cortex-M4 cycles per inference: ~{summary['cycles_estimate_m4']:,} at 0 flash wait states, "
                     f"~{summary['cycles_estimate_m4_wait_states']:,} at {summary['flash_wait_states']} without a "
                     "flash cache (estimates: a per-instruction-class cost table, plus the wait states on every "
                     "128-bit line of code fetched and every load from flash)")
    if report.layers_note:
        lines.append(f"no per-layer counts: {report.layers_note}")
    if report.layers:
        lines.append("instructions per layer (from a build that calls a trace hook after each layer):")
        total = sum(layer.instructions for layer in report.layers)
        lines += [f"  layer {layer.layer:3d} {layer.instructions:>13,} {100 * layer.instructions / total:5.1f}%  "
                  + (f"{layer.instructions / layer.macs:5.2f} instr/MAC  " if layer.macs else " " * 17)
                  + layer.op for layer in report.layers]
    reference = {"tflm": "TFLite Micro", "onnxruntime": "ONNX Runtime"}.get(report.reference, "TFLite reference kernels")
    lines.append(f"{reference}: {report.matched}/{report.inputs} outputs identical")
    lines.append("bit-exact" if report.bit_exact else "MISMATCH")
    return lines


def cmd_report(args) -> int:
    from .presentation.memory import format_report, memory_report

    if args.html:
        check_output_file(args.html, "--html", [args.model])
    if args.png:
        check_output_file(args.png, "--png", [args.model] + ([args.html] if args.html else []), generated=is_png)
    try:
        options = Options(optimize=args.optimize, memory_budget=args.memory_budget,
                          quantized_input=args.quantized_input, input=args.input, input_format=args.input_format,
                          normalize=args.normalize, input_scale_from=args.input_scale_from,
                          input_resize=args.input_resize)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    report = memory_report(args.model, options, with_tflm=not args.no_tflm)
    written = []
    if args.html or args.png:
        from .presentation.html import write_reports

        written = write_reports(report, args.html, args.png)
    return _print(args, {**report.to_dict(), "written": [str(p) for p in written]},
                  [format_report(report)] + [f"wrote {p}" for p in written])


def cmd_demo(args) -> int:
    from .presentation.demo import Progress, demo_inputs, format_demo, run_demo

    model, tests = demo_inputs(args.model, args.tests)
    for folder in ("host", "cortex-m4") + (("rows", "camera", "camera-cortex-m4") if args.camera else ()):
        check_output_folder(f"{args.out}/{folder}", output_names("mnv2"), [model, tests])
    demo = run_demo(model, tests, args.out, inputs=args.inputs, firmware=not args.no_firmware,
                    camera=args.camera, progress=Progress(enabled=not args.quiet))
    if args.json:
        print(json.dumps({**demo.to_dict(), "exit_code": EXIT_OK if demo.ok else EXIT_MISMATCH}, indent=2))
    elif not args.quiet or not demo.ok:
        print(format_demo(demo))
    return EXIT_OK if demo.ok else EXIT_MISMATCH


COMMANDS = {"compile": cmd_compile, "verify": cmd_verify, "run": cmd_run, "report": cmd_report,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        return _fail(str(exc), as_json="--json" in argv)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, as_json: bool) -> int:
    """A user error: one line on stderr, and with --json the same as a JSON object on stdout."""
    message = " ".join(message.split())  # one line, whatever the message held
    print(f"mnv2gen: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "exit_code": EXIT_USER_ERROR, "error": message}))
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
