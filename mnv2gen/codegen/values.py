"""What a lowered field or argument is, as data: lowering says what each value is, and the
templates spell it in C (render.c_value, the `c` filter). Besides these, a value is an int,
None (a NULL pointer), a RowKernel or a StageKind (their enum constants)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArrayRef:
    """A const array of the weights file, by its symbol without the prefix."""

    symbol: str


@dataclass(frozen=True)
class DeclRef:
    """A static const of the model file (a layer's params, a pipeline's tables): the object,
    or with `address` a pointer to it."""

    name: str
    address: bool = False


@dataclass(frozen=True)
class ArenaAddress:
    """A pointer into the arena."""

    offset: int
    ctype: str = "int8_t"
    const: bool = False


@dataclass(frozen=True)
class Float32:
    """A float argument, spelled as the exact float32 literal."""

    value: float


@dataclass(frozen=True)
class Double:
    """A double argument."""

    value: float
