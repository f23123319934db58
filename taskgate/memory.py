"""Keeping a many-threaded process's memory small.

glibc gives each thread that allocates concurrently a malloc arena of its own (up to eight per
core), and memory freed into one arena is not reused by another: a process with dozens of threads
(HTTP, consumers, relays, callback pool) grows by several MiB that way. Two arenas are plenty for
Python, whose allocations mostly go through its own allocator under the GIL anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(environ=None) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX already says how many (glibc reads it
    itself) or the C library is not glibc; True if the cap was set. Call before starting threads."""
    environ = os.environ if environ is None else environ
    if environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return False
    return mallopt(M_ARENA_MAX, ARENAS) == 1
