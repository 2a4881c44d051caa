"""Checking sizes: whole numbers in range, and what fits in memory (a message instead of a
MemoryError)."""
import math
import numbers
import os

__all__ = ["physical_memory", "check_fits_in_memory", "format_bytes", "check_count"]


def physical_memory():
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX, or the name is unknown
        return None


def format_bytes(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def check_fits_in_memory(nbytes, what):
    """ValueError naming ``what`` if ``nbytes`` exceed this machine's physical memory.

    An array larger than all of the memory cannot be worked with; asking for it gives a
    MemoryError (or minutes of swapping) far from the argument that caused it.
    """
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise ValueError(f"{what} needs {format_bytes(nbytes)}, more than this machine's "
                         f"memory ({format_bytes(limit)})")


def check_count(name, value, minimum=1):
    """``value`` as an int, or ValueError naming ``name`` unless it is a whole number (an int,
    or a float such as 1e4 that holds one; not a bool, NaN or inf) >= ``minimum``."""
    whole = (isinstance(value, numbers.Real) and not isinstance(value, bool)
             and math.isfinite(value) and int(value) == value)
    if not whole or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
