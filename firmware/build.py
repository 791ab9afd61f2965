"""Cross-build generated C with the firmware harness for one board, and measure the result."""

from __future__ import annotations

import importlib.resources
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..codegen.render import ArenaMode, Options
from ..errors import UserError
from ..targets import C_FLOAT_FLAGS, C_WARNINGS
from ..verification.harness import model_defines, streams_input
from .boards import Board, Console

# Sections per function and per array, so the link drops whatever is never referenced.
C_FLAGS = ["-O2", "-ffunction-sections", "-fdata-sections", *C_FLOAT_FLAGS, *C_WARNINGS]
# The harness of each console: its main, the measurements, start-up, and the console's driver.
HARNESS_SOURCES = {Console.SEMIHOSTING: ("harness.c", "measure.c", "console.c", "startup.c", "semihost.c"),
                   Console.USART: ("linked_harness.c", "measure.c", "console.c", "startup.c", "stm32_usart.c")}
# What includes the generated header (and, traced, calls or defines the trace hook).
MODEL_USERS = ("harness.c", "linked_harness.c", "measure.c")
# Only libc's string functions (memcpy, memset), libm's fmaf (ONNX models, where the core has
# no FMA) and libgcc's helpers are linked: start-up and I/O are our own (startup.c, the
# console's driver).
LIBRARIES = ["-lm", "-lc", "-lgcc"]

# Debian packages providing each tool.
PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-objcopy": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}


def tool(name: str) -> str:
    """The path of a cross tool, or a UserError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        package = PACKAGES[name]
        raise UserError(f"{name} not found: install it with `apt-get install {package}` "
                        "(or run tools/setup.sh)")
    return path


def firmware_dir() -> Path:
    return Path(str(importlib.resources.files("mnv2gen.firmware")))


def firmware_file(name: str) -> Path:
    return firmware_dir() / name


def _check_libc(board: Board) -> None:
    """gcc prints the bare name back when the multilib's libc.a is missing."""
    found = subprocess.run([tool("arm-none-eabi-gcc"), *board.cpu_flags, "-print-file-name=libc.a"],
                           capture_output=True, text=True).stdout.strip()
    if not Path(found).is_absolute():
        raise UserError("newlib for arm-none-eabi not found: install it with "
                        "`apt-get install libnewlib-arm-none-eabi` (or run tools/setup.sh)")


@dataclass
class Firmware:
    elf: Path
    board: Board
    weights_object: Path  # the generated *_weights.c, compiled: its symbols are the weights

    @cached_property
    def symbols(self) -> dict[str, tuple[int, int]]:
        return symbol_table(self.elf)

    def symbol_address(self, name: str) -> int:
        return self.symbols[name][0]


def _compile(source: Path, obj: Path, flags: list[str]) -> None:
    command = [tool("arm-none-eabi-gcc"), *flags, "-c", str(source), "-o", str(obj)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"firmware build failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")


def _objects(c_dir: Path, prefix: str, board: Board, obj_dir: Path, trace: bool,
             external_arena: bool) -> tuple[list[Path], Path]:
    """Compile what is not compiled yet in `obj_dir`; return every object and the weights'.
    Only the harness and the model's run function change with tracing, so a traced build
    reuses the kernels and the (slow to compile) weights of an untraced one."""
    harness = [firmware_file(name) for name in HARNESS_SOURCES[board.console]]
    defines = model_defines(prefix, trace, streams_input(c_dir, prefix), external_arena)
    base = [*board.cpu_flags, *C_FLAGS, "-I", str(c_dir), "-I", str(firmware_dir())]
    traced_sources = {*map(firmware_file, MODEL_USERS), c_dir / f"{prefix}_model.c"}
    jobs, objects = [], []
    for source in sorted(c_dir.glob("*.c")) + harness:
        varies = source in traced_sources
        obj = obj_dir / f"{source.stem}{'-trace' if trace and varies else ''}.o"
        objects.append(obj)
        if not obj.exists():
            jobs.append((source, obj, base + (defines if varies else [])))
    obj_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor() as pool:
        for future in [pool.submit(_compile, *job) for job in jobs]:
            future.result()
    return objects, obj_dir / f"{prefix}_weights.o"


def _placement_scripts(options: Options | None, ld_dir: Path) -> Path:
    """The folder of the two files sections.ld includes, mapping the sections the C was placed
    in: the weights' among the constants (flash), the arena's among .bss (zeroed RAM)."""
    placed = {"placed_constants.ld": options and options.weights_section,
              "placed_zeroed.ld": options and options.arena_section}
    ld_dir.mkdir(parents=True, exist_ok=True)
    for name, section in placed.items():
        # Section names were validated (render.SECTION_PATTERN): nothing but [A-Za-z0-9_.].
        (ld_dir / name).write_text(f"*({section})\n" if section else "/* nothing placed */\n")
    return ld_dir


def _link(objects: list[Path], board: Board, elf: Path, stack_size: int | None, placement_dir: Path) -> None:
    ld_dir = firmware_file("ld")
    command = [tool("arm-none-eabi-gcc"), *board.cpu_flags, "-nostdlib", "-L", str(placement_dir), "-L", str(ld_dir),
               "-T", board.linker_script, "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}"]
    if stack_size is not None:
        command.append(f"-Wl,--defsym=__stack_size__={stack_size}")
    command += [*map(str, objects), *LIBRARIES, "-o", str(elf)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return
    # Our ASSERTs in sections.ld say "mnv2gen: <what>"; ld adds "region `X' overflowed by N bytes".
    reasons = [line.split(": ", 1)[-1].removeprefix("mnv2gen: ") for line in result.stderr.splitlines()
               if ": mnv2gen: " in line or "overflowed" in line]
    if reasons:
        raise UserError(f"the model does not fit the {board.name} board: " + "; ".join(reasons))
    raise RuntimeError(f"firmware link failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")


def _inputs_object(inputs: bytes, count: int, board: Board, obj_dir: Path) -> Path:
    """The inputs linked into a USART board's image (see linked_harness.c), compiled."""
    rows = ",\n".join("    " + ", ".join(map(str, inputs[i:i + 24])) for i in range(0, len(inputs), 24))
    source = obj_dir / "harness_inputs.c"
    source.write_text("/* Generated by mnv2gen: the inputs the firmware runs, one after another. */\n"
                      "#include <stdint.h>\n\n"
                      f"const uint32_t harness_input_count = {count};\n"
                      "__attribute__((aligned(8))) const uint8_t harness_inputs[] = {\n"
                      f"{rows or '    0'}\n}};\n")
    obj = source.with_suffix(".o")
    _compile(source, obj, [*board.cpu_flags, *C_FLAGS])
    return obj


def _write_images(elf: Path) -> None:
    """The .bin (raw flash from its first address) and .hex (Intel HEX) beside the ELF."""
    for fmt, suffix in (("binary", ".bin"), ("ihex", ".hex")):
        subprocess.run([tool("arm-none-eabi-objcopy"), "-O", fmt, str(elf), str(elf.with_suffix(suffix))],
                       check=True, capture_output=True)


def build_firmware(c_dir: str | Path, prefix: str, board: Board, workdir: str | Path, *,
                   trace: bool = False, stack_size: int | None = None, inputs=None,
                   options: Options | None = None) -> Firmware:
    """Build `workdir`/firmware[-trace].elf from the generated C in `c_dir` and the harness.
    A USART board's image holds its `inputs` (an array, first axis the input number), and is
    written as .bin and .hex too. `options`, those the C was generated with: its sections
    are placed in the board's memories, an external arena is handed over by the harness."""
    c_dir, workdir = Path(c_dir), Path(workdir)
    _check_libc(board)
    external_arena = options is not None and options.arena is ArenaMode.EXTERNAL
    objects, weights = _objects(c_dir, prefix, board, workdir / "obj", trace, external_arena)
    if board.console is Console.USART:
        count = 0 if inputs is None else len(inputs)
        data = b"" if inputs is None else inputs.tobytes()
        objects.append(_inputs_object(data, count, board, workdir / "obj"))
    elf = workdir / f"firmware{'-trace' if trace else ''}.elf"
    _link(objects, board, elf, stack_size, _placement_scripts(options, workdir / "ld"))
    if board.flashable:
        _write_images(elf)
    return Firmware(elf=elf, board=board, weights_object=weights)


def build_program(sources: list[Path], include_dir: Path, board: Board, workdir: Path) -> Path:
    """An image of `sources` (one defines main()) on the board's startup and semihosting
    console, without a model's harness: for tests that drive a kernel directly. Returns the ELF;
    it runs under QEMU as the harness does, its files in QEMU's working folder."""
    flags = [*board.cpu_flags, *C_FLAGS, "-I", str(include_dir), "-I", str(firmware_dir())]
    obj_dir = Path(workdir) / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for source in [*sources, *map(firmware_file, ("console.c", "startup.c", "semihost.c"))]:
        objects.append(obj_dir / f"{Path(source).stem}.o")
        _compile(Path(source), objects[-1], flags)
    elf = Path(workdir) / "program.elf"
    _link(objects, board, elf, None, _placement_scripts(None, Path(workdir) / "ld"))
    return elf


def symbol_table(path: Path) -> dict[str, tuple[int, int]]:
    """{name: (address, size)} of the defined global and local symbols of an ELF or object."""
    out = subprocess.run([tool("arm-none-eabi-nm"), "-S", "--defined-only", str(path)],
                         capture_output=True, text=True, check=True).stdout
    symbols = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4:  # address size type name (symbols without a size have 3 fields)
            symbols[fields[3]] = (int(fields[0], 16), int(fields[1], 16))
        elif len(fields) == 3:
            symbols.setdefault(fields[2], (int(fields[0], 16), 0))
    return symbols


_SIZE_LINE = re.compile(r"^(\.\S+)\s+(\d+)\s+(\d+)$")


def section_sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run([tool("arm-none-eabi-size"), "-A", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    return {m[1]: int(m[2]) for m in map(_SIZE_LINE.match, out.splitlines()) if m}


def firmware_sizes(firmware: Firmware) -> dict[str, int]:
    """Flash and RAM of the firmware, with the weights (the *_weights.c constants that the link
    kept) reported apart from code."""
    sections = section_sizes(firmware.elf)
    kept = firmware.symbols
    weights = sum(kept[name][1] for name in symbol_table(firmware.weights_object) if name in kept)
    inputs = kept.get("harness_inputs", (0, 0))[1]  # a USART board's linked test inputs
    text = sections.get(".vectors", 0) + sections.get(".text", 0)
    rodata = sections.get(".rodata", 0) + sections.get(".ARM.exidx", 0)
    data, bss = sections.get(".data", 0), sections.get(".bss", 0)
    return {
        "text_bytes": text,
        "rodata_bytes": rodata,
        "data_bytes": data,
        "bss_bytes": bss,
        "weights_bytes": weights,
        "code_bytes": text + rodata + data - weights - inputs,  # flash without the weights
        "test_inputs_bytes": inputs,
        "flash_bytes": text + rodata + data,
        "stack_reserved_bytes": sections.get(".stack", 0),
    }
