"""`sepconv.kernels.keep_freed_memory`: freed large blocks reused, counted by the kernel."""

import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB array, then counts the minor page faults of allocating
# and touching another one (the kernel's own count, getrusage): fresh pages fault,
# reused ones do not.
SCRIPT = """
import resource, sys
import numpy as np
from sepconv.kernels import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else None
np.ones(1 << 23)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(1 << 23)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(setting):
    out = subprocess.run([sys.executable, "-c", SCRIPT, setting], capture_output=True, text=True, check=True)
    applied, count = out.stdout.split()[-2:]
    return applied, int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_reuses_a_freed_large_block():
    applied, with_setting = faults("on")
    _, without = faults("off")
    assert applied == "True"
    assert without >= 16  # 64 MiB of fresh pages: 16,384 faults of 4 KiB, 32 of 2 MiB
    assert with_setting * 10 <= without


def test_keep_freed_memory_is_idempotent():
    from sepconv.kernels import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() == first
