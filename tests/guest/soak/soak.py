"""The full soak (`make soak`; not part of `make check`, whose soak_short runs the same at small
counts). SOAK_SCALE (default 1) multiplies every count: 10^6 trapped accesses, 100 worker
SIGKILLs and 100 VMM hang-ups in the middle of requests, 500 AddDevice/RemoveDevice cycles,
20 QMP hot-plug cycles."""

import os

from vbguest import guest_test
import vbsoak

SCALE = float(os.environ.get("SOAK_SCALE", "1"))


def n(full):
    return max(1, int(full * SCALE))


@guest_test("soak", timeout=int(7200 * max(SCALE, 0.05)))
def soak(g):
    vbsoak.run(g, accesses=n(10**6), kills=n(100), disconnects=n(100), cycles=n(500), qmp=n(20),
               budget=int(6600 * max(SCALE, 0.05)))
