"""The verification wing: proves generated C equal to its reference engine, on the host
(`host`) and on emulated Cortex-M boards (`board`), against the oracles (`oracle`), with one
definition of the inputs and of the verdict (`compare`). It depends on the compiler; nothing
in the compiler depends on it."""
