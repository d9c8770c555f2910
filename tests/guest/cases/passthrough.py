"""End-to-end passthrough on a real kernel: vfio-brokerd assigns devices bound to vfio-pci in the
guest, each to its own sandboxed vfio-worker, and vfio-demo-vmm (a VMM on libvfiobroker) drives
them: DMA through the IOMMU, MSI and MSI-X from the devices to the VMM's eventfds, config space
and BAR emulation, disconnects, crashes and hot-plug. Every test starts its own broker and stops
it at the end (SIGTERM must leave no worker behind).

vfio-demo-vmm runs with -r: its trapped config and BAR accesses go through the shared-memory ring
(ipc/ipc_ring.h) of the sandboxed worker, and it fails unless every worker took the ring, so a
ring silently replaced by the socket fails the test; edu_msi_delivery_socket runs the same
scenario with -s (no ring offered), so the socket path stays proven too."""

import time

import vbkernel
from vbbroker import Broker, config
from vbguest import Device, guest_test, note


def vmm(g, scenario, sock, timeout=120, transport="-r"):
    rc, out = g.run("vfio-demo-vmm %s %s %s" % (transport, scenario, sock), timeout=timeout)
    assert rc == 0, "vfio-demo-vmm %s: exit %d:\n%s" % (scenario, rc, out)
    for line in out.splitlines():
        if line.startswith("  ") or line.startswith("figures:"):
            note(line.strip())
    return out


def figures(out):
    line = [l for l in out.splitlines() if l.startswith("figures:")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def assert_released(b, bdf):
    st = b.status(bdf)
    assert st["dma_mappings"] == 0 and st["pinned_bytes"] == 0, st
    assert sum(i["enabled"] for i in st["irqs"]) == 0, st
    return st


@guest_test("edu_dma_roundtrip", kernels=vbkernel.ALL)
def edu_dma_roundtrip(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(edu)
        assert rep["iommu_backend"] in ("vfio-type1v2", "vfio-type1"), rep
        out = vmm(g, "edu-dma", rep["socket_path"])
        assert figures(out)["dma_bytes_verified"] == 4 * 2048, out
        assert "untouched (blocked by the IOMMU)" in out, out
        assert_released(b, edu)


@guest_test("edu_msi_delivery", kernels=vbkernel.ALL)
def edu_msi_delivery(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        out = vmm(g, "edu-msi", b.add(edu)["socket_path"])
        assert figures(out)["interrupts"] == 16, out
        assert figures(out)["ring_devices"] == 1, out
        # The VMM has gone: its interrupt routes went with it.
        b.wait_status(edu, lambda s: sum(i["enabled"] for i in s["irqs"]) == 0,
                      "MSI torn down after the VMM disconnected")


@guest_test("edu_msi_delivery_socket")
def edu_msi_delivery_socket(g):
    """edu_msi_delivery with every trapped access over the socket (no ring offered)."""
    edu = g.bdf("edu0")
    with Broker(g) as b:
        out = vmm(g, "edu-msi", b.add(edu)["socket_path"], transport="-s")
        assert figures(out)["interrupts"] == 16, out
        assert figures(out)["ring_devices"] == 0, out


@guest_test("edu_intx_delivery", kernels=vbkernel.ALL)
def edu_intx_delivery(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        out = vmm(g, "edu-intx", b.add(edu)["socket_path"])
        assert figures(out)["interrupts"] == 8, out
        assert "fires again when unmasked" in out, out
        b.wait_status(edu, lambda s: sum(i["enabled"] for i in s["irqs"]) == 0,
                      "INTx torn down after the VMM disconnected")


@guest_test("e1000e_msix_delivery", kernels=vbkernel.ALL)
def e1000e_msix_delivery(g):
    nic = g.bdf("e1000e0")
    with Broker(g) as b:
        out = vmm(g, "e1000e-msix", b.add(nic)["socket_path"])
        assert figures(out)["ring_devices"] == 1, out
        assert figures(out)["interrupts"] == 20, out


@guest_test("e1000e_msix_masked_pending")
def e1000e_msix_masked_pending(g):
    nic = g.bdf("e1000e0")
    with Broker(g) as b:
        out = vmm(g, "e1000e-msix-masked", b.add(nic)["socket_path"])
        assert out.count("PBA bit set") == 3 and out.count("PBA bit cleared") == 3, out


@guest_test("nvme_bars_and_msix")
def nvme_bars_and_msix(g):
    nvme = g.bdf("nvme0")
    with Broker(g) as b:
        out = vmm(g, "nvme-bars", b.add(nvme, opts="--allow-mmap")["socket_path"])
        assert "are holes" in out and "reads the same mapped and trapped" in out, out


@guest_test("vmm_disconnect_reconnect")
def vmm_disconnect_reconnect(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(edu)
        out = vmm(g, "reconnect", rep["socket_path"])
        assert out.count("disconnecting without unmapping") == 2, out
        b.wait_status(edu, lambda s: s["dma_mappings"] == 0,
                      "mappings dropped after the last disconnect")
        st = b.status(edu)
        assert st["worker_pid"] == rep["worker_pid"] and st["restarts"] == 0, st


@guest_test("vmm_not_reading_and_quick_reconnects", timeout=600)
def vmm_not_reading_and_quick_reconnects(g):
    """Issue 14, findings 1 and 5, on a brokered e1000e (4 KiB config space): a VMM that stops
    reading its replies does not stall its worker (another VMM is answered meanwhile, nothing is
    lost, and past the send-queue budget the worker drops it), and a VMM that
    reconnects right after closing gets in, 200 times. The broker never sees a hung worker."""
    nic = g.bdf("e1000e0")
    with Broker(g) as b:
        rep = b.add(nic)
        rc, out = g.run("guest_vmm_stall %s" % rep["socket_path"], timeout=540)
        for line in out.splitlines():
            if line.startswith("  "):
                note(line.strip())
        assert rc == 0 and "OK vendor 8086" in out, "guest_vmm_stall: exit %d:\n%s" % (rc, out)
        st = b.status(nic)
        assert st["worker_pid"] == rep["worker_pid"] and st["restarts"] == 0, st
        assert st["state"] in ("ready", "connected"), st


def start_hold(g, sock, log):
    g.check("vfio-demo-vmm hold %s </dev/null >%s 2>&1 & echo $!" % (sock, log))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rc, out = g.run("cat %s" % log)
        if "holding:" in out:
            return
        assert "FAIL" not in out, out
        time.sleep(0.2)
    raise AssertionError("the VMM did not take the device into use:\n" + out)


@guest_test("worker_crash_cleanup", kernels=vbkernel.ALL)
def worker_crash_cleanup(g):
    edu = g.bdf("edu0")
    with Broker(g, config(restart="never")) as b:
        rep = b.add(edu)
        start_hold(g, rep["socket_path"], "/tmp/hold.log")
        st = b.status(edu)
        assert st["dma_mappings"] == 1 and st["pinned_bytes"] == 2 << 20, st
        assert sum(i["enabled"] for i in st["irqs"]) >= 1, st
        resets = st["resets"]
        g.check("kill -KILL %d" % rep["worker_pid"])
        st = b.wait_status(edu, lambda s: s["state"] == "faulted", "device faulted after SIGKILL")
        assert "signal 9" in (st["last_fault"] or "") or "Killed" in (st["last_fault"] or ""), st
        assert st["dma_mappings"] == 0 and st["pinned_bytes"] == 0, st
        assert sum(i["enabled"] for i in st["irqs"]) == 0, st
        assert st["resets"] > resets, "device not reset after the crash: %r" % st
        rc, out = g.run("cat /tmp/hold.log")
        assert "worker went away" in out, out
        assert b.alive(), "the broker died with its worker"
        # The device is assignable again, and works.
        b.remove(edu, "--force")
        rep = b.add(edu)
        vmm(g, "edu-dma", rep["socket_path"])
        assert_released(b, edu)


@guest_test("worker_crash_restart")
def worker_crash_restart(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(edu)
        g.check("kill -KILL %d" % rep["worker_pid"])
        st = b.wait_status(edu, lambda s: s["restarts"] == 1 and s["state"] == "ready",
                           "worker restarted by the on-failure policy")
        assert st["worker_pid"] not in (0, rep["worker_pid"]), st
        vmm(g, "edu-dma", st["socket_path"])


@guest_test("hotplug_add_remove", kernels=vbkernel.ALL)
def hotplug_add_remove(g):
    with Broker(g) as b:
        bdf = g.hotplug(Device("edu", id="hp0"))
        rep = b.add(bdf, vm="vm2")
        vmm(g, "edu-dma", rep["socket_path"])
        start_hold(g, rep["socket_path"], "/tmp/hold-hp.log")
        out = b.remove(bdf, "--timeout 10000")
        assert out["vmm_acknowledged"] is True, out
        rc, log = g.run("sleep 0.5; cat /tmp/hold-hp.log")
        assert "removal acknowledged" in log, log
        assert bdf not in [d["bdf"] for d in b.devices()]
        rc, _ = g.run("kill -0 %d" % rep["worker_pid"])
        assert rc != 0, "worker %d still alive after RemoveDevice" % rep["worker_pid"]
        # The broker released the group: it can be opened again by someone else.
        rc, out = g.run("guest_vfio_available " + bdf)
        assert rc == 0, "group of %s not released:\n%s" % (bdf, out)
        g.unplug("hp0")


@guest_test("vm_quotas_set_by_first_device")
def vm_quotas_set_by_first_device(g):
    """A VM's DMA quotas come from its first AddDevice. A second device asking for other quotas
    is refused, and the refusal changes nothing: the VM keeps its quotas (the next refusal still
    names them) and its first device stays ready. Asking for the same quotas, or none, is fine."""
    edu, nic = g.bdf("edu0"), g.bdf("e1000e0")
    with Broker(g) as b:
        rep = b.add(edu, vm="vmq", opts="--max-pinned 64M --max-mappings 100")
        for ask in ("--max-pinned 128M", "--max-mappings 200"):
            out = b.ctl("add %s --vm vmq %s" % (nic, ask), expect_rc=1)
            assert "set by its first device" in out, out
            assert "100 DMA mappings and 67108864 pinned bytes" in out, out
            assert nic not in [d["bdf"] for d in b.devices()]
            assert b.status(edu)["state"] == "ready"
        note("refused: " + out.strip().splitlines()[-1])
        b.add(nic, vm="vmq", opts="--max-pinned 64M")
        vmm(g, "edu-dma", rep["socket_path"])
        b.remove(nic)
        b.remove(edu)


def printed_view(out):
    """The config view the reset scenario printed: 'view: OFF XXXXXXXX ...' lines to bytes."""
    view = bytearray()
    for line in out.splitlines():
        if line.startswith("view: "):
            view += bytes.fromhex("".join(line.split()[2:]))
    return bytes(view)


def check_reset(g, dev, scenario):
    """Runs a reset scenario on one device under its own broker: exactly one VFIO_DEVICE_RESET,
    and the view the scenario printed after it agrees with the kernel's raw config space in
    sysfs: identity, capability pointer, and the Command register, which the kernel restored
    across the reset (memory decode and bus mastering still on) as the worker's view claims."""
    bdf = g.bdf(dev)
    with Broker(g) as b:
        rep = b.add(bdf)
        resets = b.status(bdf)["resets"]
        out = vmm(g, scenario, rep["socket_path"])
        assert b.status(bdf)["resets"] == resets + 1, b.status(bdf)
        view = printed_view(out)
        raw = g.read_file("/sys/bus/pci/devices/%s/config" % bdf)
        assert len(view) in (256, 4096) and len(raw) >= 64, (len(view), len(raw))
        for name, off, n in (("vendor/device", 0, 4), ("class/revision", 8, 4),
                             ("subsystem", 0x2c, 4), ("capability pointer", 0x34, 1)):
            assert view[off:off + n] == raw[off:off + n], \
                "%s %s: worker %s, kernel %s" % (dev, name, view[off:off + n].hex(),
                                                  raw[off:off + n].hex())
        cmd_view = int.from_bytes(view[4:6], "little")
        cmd_raw = int.from_bytes(raw[4:6], "little")
        assert cmd_view & 0x6 == 0x6 and cmd_raw & 0x6 == 0x6, \
            "%s Command after reset: worker 0x%04x, kernel 0x%04x" % (dev, cmd_view, cmd_raw)
        assert cmd_view & 0x7 == cmd_raw & 0x7, (hex(cmd_view), hex(cmd_raw))
        note("%s: Command 0x%04x in the worker's view, 0x%04x in sysfs after the reset"
             % (dev, cmd_view, cmd_raw))


@guest_test("reset_config_view", kernels=vbkernel.ALL)
def reset_config_view(g):
    """A VMM programs a BAR and Command and enables MSI, then resets the device (edu: MSI,
    e1000e: MSI and MSI-X, both through VFIO_DEVICE_RESET): it gets VFB_EVENT_RESET, and the
    whole config view is the programmed one with MSI off (the scenario checks that byte by
    byte); then check_reset holds that view against the kernel's."""
    for dev in ("edu0", "e1000e0"):
        check_reset(g, dev, "reset")


@guest_test("guest_flr_resets_device")
def guest_flr_resets_device(g):
    """The guest's Initiate FLR (QEMU's nvme advertises FLR) is not dropped: the worker resets
    the device through the broker, as the kernel's vfio-pci does for its own users, and the VMM
    hears VFB_EVENT_RESET before its config write returns; the view is checked as for RESET."""
    check_reset(g, "nvme0", "flr")


def metric(b, name):
    """The value of an unlabelled metric of the broker (vfio-brokerctl metrics)."""
    for line in b.g.check("vfio-brokerctl metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric %s" % name)


def pooled_workers(g, b):
    """The broker's children that are vfio-workers while no device has one: the pool's."""
    pids = []
    for pid in g.pids("vfio-worker"):
        rc, out = g.run("cut -d' ' -f4 /proc/%d/stat" % pid)
        if rc == 0 and int(out.strip() or 0) == b.pid:
            pids.append(pid)
    return pids


def nofile(g, pid):
    """The process's RLIMIT_NOFILE, (soft, hard)."""
    line = [l for l in g.check("cat /proc/%d/limits" % pid).splitlines()
            if l.startswith("Max open files")][0].split()
    return int(line[3]), int(line[4])


def wait_pool_ready(g, b, n, timeout=120):
    deadline = time.monotonic() + timeout
    while metric(b, "vfio_broker_pool_ready") != n:
        assert time.monotonic() < deadline, "the pool never had %d ready:\n%s" % (n, b.log_tail())
        time.sleep(0.2)


@guest_test("edu_prestarted_worker_dma_msi")
def edu_prestarted_worker_dma_msi(g):
    """[worker] prestart = 1: the device is handed to the worker the broker started before the
    AddDevice (its pid is AddDevice's worker_pid), which then passes edu through with DMA and
    MSI as a worker spawned for it would; a new one takes its place in the pool, and the pool's
    workers hold nothing but their broker channel until then."""
    edu = g.bdf("edu0")
    with Broker(g, config(extra="prestart = 1\n")) as b:
        wait_pool_ready(g, b, 1)
        pooled = pooled_workers(g, b)
        assert len(pooled) == 1, pooled
        fds = g.check("ls /proc/%d/fd" % pooled[0]).split()
        assert sorted(fds, key=int) == ["0", "1", "2", "3"], fds
        # Started before its device was known: the configured ceiling (rlimit_nofile).
        assert nofile(g, pooled[0]) == (4096, 4096), nofile(g, pooled[0])
        rep = b.add(edu)
        assert rep["worker_pid"] == pooled[0], (rep, pooled)
        # The HANDOFF brings the device's own need, which the worker set before opening
        # anything of it: what a worker spawned for edu gets.
        soft, hard = nofile(g, rep["worker_pid"])
        assert soft == hard and 16 <= hard <= 64, (soft, hard)
        assert metric(b, "vfio_broker_pool_taken_total") == 1
        out = vmm(g, "edu-dma", rep["socket_path"])
        assert figures(out)["dma_bytes_verified"] == 4 * 2048, out
        out = vmm(g, "edu-msi", rep["socket_path"])
        assert figures(out)["interrupts"] == 16, out
        wait_pool_ready(g, b, 1)
        refill = [p for p in pooled_workers(g, b) if p != rep["worker_pid"]]
        assert len(refill) == 1, refill
        note("device given to pre-started worker %d; worker %d pre-started in its place"
             % (rep["worker_pid"], refill[0]))
        b.remove(edu)
