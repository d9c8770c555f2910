"""The soak, small: every `make check` runs what `make soak` runs at full size (see
tests/guest/vbsoak.py), scaled to well under a minute in the TCG guest."""

from vbguest import guest_test
import vbsoak


@guest_test("soak_short", timeout=240)
def soak_short(g):
    vbsoak.run(g, accesses=5000, kills=4, disconnects=4, cycles=6, qmp=1, budget=180)
