"""The `mnv2gen` command.

    mnv2gen compile model.tflite --out DIR       write the C
    mnv2gen verify  model.tflite --out DIR -n N  compile, build on the host, compare N inputs

Exit codes: 0 success; 1 the generated C disagrees with TFLite; 2 a user error (bad model,
unsupported op, bad flag) with a message and no traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from . import __version__
from .codegen.render import PREFIX_PATTERN, TARGETS, Options
from .errors import EXIT_MISMATCH, EXIT_OK, EXIT_USER_ERROR, UserError
from .plan.bound import paper_bound


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
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        sub.add_argument("--quiet", action="store_true", help="print nothing on success")
        return sub

    model_command("compile", "compile a .tflite model into C")
    verify = model_command("verify", "compile, build on the host and compare with TFLite, bit for bit")
    verify.add_argument("-n", "--inputs", type=_positive, default=100,
                        help="random inputs to compare, besides the all-min and all-max ones (default: 100)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    verify.add_argument("--no-tflm", action="store_true", help="skip the TFLite Micro comparison")
    verify.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    return parser


def _compile(args) -> tuple[dict, object]:
    from .compiler import compile_model, write_files

    command = "mnv2gen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = Options(prefix=args.prefix, target=args.target, command=command)
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
    from .verify import verify

    summary, result = _compile(args)
    report = verify(args.model, result, args.out, count=args.inputs, seed=args.seed,
                    use_tflm=not args.no_tflm, sanitize=args.sanitize, prefix=args.prefix)
    summary.update(inputs=report.inputs, matched_tflite=report.matched_tflite,
                   matched_tflm=report.matched_tflm, bit_exact=report.bit_exact,
                   paper_bound_bytes=paper_bound(result.graph)[0],
                   tflm_arena_bytes=report.tflm_arena.get("arena_total_bytes"))
    if report.first_mismatch:
        summary["first_mismatch"] = report.first_mismatch
    lines = [f"TFLite reference kernels: {report.matched_tflite}/{report.inputs} outputs identical"]
    if report.matched_tflm is not None:
        lines.append(f"TFLite Micro:             {report.matched_tflm}/{report.inputs} outputs identical")
    elif report.tflm_note:
        lines.append(f"TFLite Micro: not compared ({report.tflm_note})")
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
    bound, where = paper_bound(result.graph)
    lines = [f"arena: {result.arena_bytes:,} bytes (all activations, input and output)"]
    if where is not None:
        lines.append(f"paper bound M(G): {bound:,} bytes (set by op {where.index}, {where.describe()})")
    total = report.tflm_arena.get("arena_total_bytes")
    if total:
        head = report.tflm_arena.get("arena_head_bytes", 0)
        lines.append(f"TFLite Micro arena: {total:,} bytes ({head:,} activations); "
                     f"ours is {result.arena_bytes / total:.2f}x")
    return lines


COMMANDS = {"compile": cmd_compile, "verify": cmd_verify}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"mnv2gen: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
