"""The `mnv2gen` command.

    mnv2gen compile model.tflite --out DIR       write the C
    mnv2gen verify  model.tflite --out DIR -n N  compile, build on the host, compare N inputs
    mnv2gen run     model.tflite --out DIR --board B -n N
                                                 ...or on a Cortex-M board under QEMU, measured

Exit codes: 0 success; 1 the generated C disagrees with TFLite; 2 a user error (bad model,
unsupported op, bad flag) with a message and no traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from . import __version__
from .codegen.render import PREFIX_PATTERN, Options
from .targets import TARGETS
from .errors import EXIT_MISMATCH, EXIT_OK, EXIT_USER_ERROR, UserError
from .firmware.boards import BOARDS, get_board
from .passes import OPTIMIZE_LEVELS


def _prefix(value: str) -> str:
    if not PREFIX_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid prefix: use a lowercase C identifier of up to 31 "
            "characters (letters, digits, underscores; starting with a letter)")
    return value


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnv2gen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"mnv2gen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def model_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("model", help="the int8 .tflite model")
        sub.add_argument("--out", required=True, help="folder for the generated C files")
        sub.add_argument("--prefix", type=_prefix, default="mnv2",
                         help="prefix of every public symbol and macro (default: mnv2)")
        sub.add_argument("--target", choices=TARGETS, default="host", help="target core (default: host)")
        sub.add_argument("--reference", choices=("tflite", "tflm"), default="tflite",
                         help="whose arithmetic to equal where TFLite's reference kernels and TFLite "
                              "Micro differ (default: tflite)")
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        sub.add_argument("--quiet", action="store_true", help="print nothing on success")
        add_schedule_options(sub)
        return sub

    def add_schedule_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--optimize", choices=OPTIMIZE_LEVELS, default="memory",
                         help="memory: fuse the stem and inverted residuals into row pipelines, the "
                              "least RAM; balanced: fuse each inverted residual; speed: layer by layer "
                              "(all bit-exact; default: memory)")
        sub.add_argument("--memory-budget", type=_positive, metavar="BYTES",
                         help="fail unless the arena fits in BYTES")

    model_command("compile", "compile a .tflite model into C")
    verify = model_command("verify", "compile, build on the host and compare with TFLite, bit for bit")
    verify.add_argument("-n", "--inputs", type=_positive, default=100,
                        help="random inputs to compare, besides the all-min and all-max ones (default: 100)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    verify.add_argument("--no-tflm", action="store_true", help="skip the TFLite Micro comparison")
    verify.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    report = commands.add_parser("report", help="print the memory plan: live bytes per step, the "
                                 "paper's bound, our arena beside TFLite Micro's, each schedule's cost",
                                 description="Print the memory plan of a model without writing C.")
    report.add_argument("model", help="the int8 .tflite model")
    report.add_argument("--json", action="store_true", help="print the report as one JSON object")
    report.add_argument("--quiet", action="store_true", help="print nothing on success")
    report.add_argument("--no-tflm", action="store_true", help="skip measuring TFLite Micro's arena")
    report.add_argument("--html", metavar="FILE", help="also write the report as a static HTML page "
                        "(a chart of live memory and a table of every step; no scripts, viewable offline)")
    report.add_argument("--png", metavar="FILE", help="also write a screenshot of that page "
                        "(needs Chromium)")
    add_schedule_options(report)
    run = model_command("run", "compile, build for a Cortex-M board, run under QEMU, compare with TFLite "
                        "bit for bit, and measure instructions, sizes and stack")
    run.add_argument("--board", choices=list(BOARDS), default="mps2-an386",
                     help="mps2-an386 (Cortex-M4), mps2-an500 (M7), mps3-an547 (M55) run under QEMU; "
                          "stm32f746 and stm32h743 only check that the model fits (default: mps2-an386)")
    run.add_argument("-n", "--inputs", type=_positive, default=10,
                     help="random inputs to compare, besides the all-min and all-max ones (default: 10)")
    run.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    layers = run.add_mutually_exclusive_group()
    layers.add_argument("--profile", action="store_true",
                        help="after the per-layer instruction counts, the costliest layers first with their "
                             "running share of the inference")
    layers.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer instruction counts (a second, traced build)")
    run.set_defaults(target=None)  # the board decides the core
    demo = commands.add_parser("demo", help="on the trained digits model: compile, prove bit-exact on the host "
                               "(and on an emulated Cortex-M4 if the Arm toolchain and QEMU are installed), "
                               "compare the C's test accuracy with the .tflite's, show memory and sizes",
                               description="Run the whole pipeline on the bundled trained model.")
    demo.add_argument("--model", default="models/mobilenet_v2_035_96_digits.tflite",
                      help="the model (default: the bundled digits model; run from the repository root)")
    demo.add_argument("--tests", help="the quantized test set, .npz with x and y (default: digits_test.npz "
                      "beside the model)")
    demo.add_argument("--out", default="build/demo", help="folder for the generated C (default: build/demo)")
    demo.add_argument("-n", "--inputs", type=_positive, default=20,
                      help="random inputs to verify, besides the all-min and all-max ones (default: 20)")
    demo.add_argument("--no-firmware", action="store_true", help="skip the emulated Cortex-M4")
    demo.add_argument("--json", action="store_true", help="print the result as one JSON object")
    demo.add_argument("--quiet", action="store_true", help="print nothing on success (no progress either)")
    return parser


def _compile(args) -> tuple[dict, object]:
    from .compiler import compile_model, write_files

    command = "mnv2gen " + " ".join(shlex.quote(a) for a in args.argv)
    options = Options(prefix=args.prefix, target=args.target, command=command, reference=args.reference,
                      optimize=args.optimize, memory_budget=args.memory_budget)
    start = time.perf_counter()
    result = compile_model(args.model, options)
    try:
        written = write_files(result.files, args.out)
    except OSError as exc:
        raise UserError(f"cannot write the output folder: {exc}", source=args.out) from None
    summary = {
        "model": args.model,
        "out": args.out,
        "files": [p.name for p in written],
        "ops": len(result.graph.ops),
        "arena_bytes": result.arena_bytes,
        "compile_seconds": round(time.perf_counter() - start, 3),
    }
    return summary, result


def _print(args, summary: dict, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print("\n".join(lines))


def cmd_compile(args) -> int:
    summary, _ = _compile(args)
    _print(args, summary, [
        f"compiled {summary['model']}: {summary['ops']} ops -> {len(summary['files'])} files in {summary['out']}",
        f"arena: {summary['arena_bytes']:,} bytes",
    ])
    return EXIT_OK


def cmd_verify(args) -> int:
    from .verification.host import divergence_note, verify

    summary, result = _compile(args)
    report = verify(args.model, result, args.out, count=args.inputs, seed=args.seed,
                    use_tflm=not args.no_tflm, sanitize=args.sanitize, prefix=args.prefix,
                    reference=args.reference)
    summary.update(inputs=report.inputs, matched_tflite=report.matched_tflite,
                   matched_tflm=report.matched_tflm, bit_exact=report.bit_exact,
                   tflite_aborted=report.tflite_aborted, tflm_aborted=report.tflm_aborted,
                   paper_bound_bytes=result.paper_bound,
                   tflm_arena_bytes=report.tflm_arena.get("arena_total_bytes"))
    if report.first_mismatch:
        summary["first_mismatch"] = report.first_mismatch
    def aborted(count: int) -> str:
        return f"; it aborted on {count} inputs, which cannot be compared" if count else ""

    lines = [f"TFLite reference kernels: {report.matched_tflite}/{report.inputs} outputs identical"
             + (" (the reference)" if report.reference == "tflite" else "") + aborted(report.tflite_aborted)]
    if report.matched_tflm is not None:
        lines.append(f"TFLite Micro:             {report.matched_tflm}/{report.inputs} outputs identical"
                     + (" (the reference)" if report.reference == "tflm" else "") + aborted(report.tflm_aborted))
    elif report.tflm_note:
        lines.append(f"TFLite Micro: not compared ({report.tflm_note})")
    other_matched = report.matched_tflm if report.reference == "tflite" else report.matched_tflite
    if other_matched is not None and other_matched != report.inputs:
        note = divergence_note(result.graph, report.reference)
        lines.append(f"note: {note}" if note else "note: the two references disagree on this model")
    lines += _memory_lines(result, report)
    if report.first_mismatch:
        lines.append(f"first difference: {report.first_mismatch}")
    lines.append("bit-exact" if report.bit_exact else "MISMATCH")
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet or not report.bit_exact:
        print("\n".join(lines))
    return EXIT_OK if report.bit_exact else EXIT_MISMATCH


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
    from .verification.board import run_on_board

    board = get_board(args.board)
    if args.target not in (None, board.core):
        raise UserError(f"--target {args.target} is not the core of board {board.name} ({board.core}); "
                        "leave --target out, the board sets it")
    args.target = board.core
    summary, result = _compile(args)
    try:
        report = run_on_board(args.model, result, args.out, board, count=args.inputs, seed=args.seed,
                              prefix=args.prefix, per_layer=not args.no_layers,
                              reference=getattr(args, "reference", "tflite"))
    except FirmwareFailed as exc:
        print(f"mnv2gen: the firmware failed: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    summary.update(report.summary())
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet or report.bit_exact is False:
        print("\n".join(_firmware_lines(report) + (_profile_lines(report) if args.profile else [])))
    return EXIT_MISMATCH if report.bit_exact is False else EXIT_OK


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
             f"flash: {sizes['flash_bytes']:,} bytes = weights {sizes['weights_bytes']:,} + code and "
             f"other constants {sizes['code_bytes']:,} (.text {sizes['text_bytes']:,}, "
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
        lines.append(f"Cortex-M4 cycles per inference: ~{summary['cycles_estimate_m4']:,} (an estimate "
                     "from a per-instruction-class cost table)")
    if report.layers_note:
        lines.append(f"no per-layer counts: {report.layers_note}")
    if report.layers:
        lines.append("instructions per layer (from a build that calls a trace hook after each layer):")
        total = sum(layer.instructions for layer in report.layers)
        lines += [f"  layer {layer.layer:3d} {layer.instructions:>13,} {100 * layer.instructions / total:5.1f}%  "
                  + (f"{layer.instructions / layer.macs:5.2f} instr/MAC  " if layer.macs else " " * 17)
                  + layer.op for layer in report.layers]
    reference = "TFLite Micro" if report.reference == "tflm" else "TFLite reference kernels"
    lines.append(f"{reference}: {report.matched}/{report.inputs} outputs identical")
    lines.append("bit-exact" if report.bit_exact else "MISMATCH")
    return lines


def cmd_report(args) -> int:
    from .presentation.memory import format_report, memory_report

    options = Options(optimize=args.optimize, memory_budget=args.memory_budget)
    report = memory_report(args.model, options, with_tflm=not args.no_tflm)
    written = []
    if args.html or args.png:
        from .presentation.html import write_reports

        written = write_reports(report, args.html, args.png)
    if args.json:
        print(json.dumps({**report.to_dict(), "written": [str(p) for p in written]}, indent=2))
    elif not args.quiet:
        print("\n".join([format_report(report)] + [f"wrote {p}" for p in written]))
    return EXIT_OK


def cmd_demo(args) -> int:
    from .presentation.demo import Progress, format_demo, run_demo

    demo = run_demo(args.model, args.tests, args.out, inputs=args.inputs, firmware=not args.no_firmware,
                    progress=Progress(enabled=not args.quiet))
    if args.json:
        print(json.dumps(demo.to_dict(), indent=2))
    elif not args.quiet or not demo.ok:
        print(format_demo(demo))
    return EXIT_OK if demo.ok else EXIT_MISMATCH


COMMANDS = {"compile": cmd_compile, "verify": cmd_verify, "run": cmd_run, "report": cmd_report,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv  # for the generated files' banner
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"mnv2gen: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
