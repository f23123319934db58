"""The malloc arena cap of taskgate's processes."""

import platform

import pytest

from taskgate.memory import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the cap is glibc's")
def test_the_arena_cap_is_set_on_glibc():
    assert limit_malloc_arenas({}) is True


def test_an_explicit_malloc_arena_max_is_left_to_glibc():
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
