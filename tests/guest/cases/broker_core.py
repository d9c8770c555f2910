"""The broker's VFIO core against the real kernel, without the daemon: vfio-broker-selftest opens
container, group and device through broker/vfio.h, maps guest-RAM memfds, runs every
dma_map_rejects_* case of the host tests against the real container (same errno expected),
cross-checks the broker's mapping count with the kernel's own (DMA_AVAIL), unmaps to zero and
resets the device. Its own TAP lines are checked one by one."""

from vbguest import guest_test, note


def selftest(g, *bdfs):
    rc, out = g.run("vfio-broker-selftest " + " ".join(bdfs), timeout=180)
    fails = [l for l in out.splitlines() if l.startswith("not ok")]
    oks = [l for l in out.splitlines() if l.startswith("ok ")]
    assert rc == 0 and not fails and oks, "exit %d:\n%s" % (rc, out)
    return out, oks


@guest_test("dma_map_rejects_real_container")
def dma_map_rejects_real_container(g):
    out, oks = selftest(g, g.bdf("edu0"))
    rejects = [l for l in oks if "dma_map_rejects_" in l]
    assert len(rejects) >= 5, "only %d rejection cases ran:\n%s" % (len(rejects), out)
    note("%d checks, %d dma_map_rejects_* cases on the real container" % (len(oks), len(rejects)))


@guest_test("broker_core_every_device")
def broker_core_every_device(g):
    for dev in ("e1000e0", "nvme0"):
        out, oks = selftest(g, g.bdf(dev))
        note("%s: %d checks" % (dev, len(oks)))
    # Two groups in one container, as two devices of one VM.
    out, oks = selftest(g, g.bdf("edu0"), g.bdf("e1000e0"))
    for check in ("container_shared_by_second_group", "second_device_opened",
                  "second_group_released"):
        assert any(l.endswith(" - " + check) for l in oks), "no 'ok' for %s:\n%s" % (check, out)


@guest_test("state_record_matches_kernel")
def state_record_matches_kernel(g):
    """The state record (issue 12) on the real container: a DMA table and an MSI index journaled
    into it, a map left in flight as a killed broker leaves it (intent written, VFIO_IOMMU_MAP_DMA
    done, no commit), then the takeover: the pending map comes back and the kernel, unmapping
    exactly its range, says it held it; the table rebuilt from the record with no kernel call has
    the kernel's count of mappings and unmaps them all to zero."""
    out, oks = selftest(g, g.bdf("edu0"))
    for check in ("record_dma_map_journaled", "record_irq_restored", "record_map_in_flight",
                  "record_adopted", "record_pending_map_was_in_kernel",
                  "record_dma_table_identical", "record_restored_count_matches_kernel",
                  "record_restored_kernel_count_zero"):
        assert any(l.endswith(" - " + check) for l in oks), "no 'ok' for %s:\n%s" % (check, out)
    note("%d record checks" % len([l for l in oks if " - record_" in l]))
