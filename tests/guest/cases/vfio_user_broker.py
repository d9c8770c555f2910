"""vfio-user through the broker on a real kernel, with a client of our own (vfio-user-edu, on
tests/vfu/vfu_client): AddDevice --protocol vfio-user makes the worker serve a SOCK_STREAM
socket beside (or instead of) the native one; DMA maps of a memfd reach the IOMMU through the
broker, MSI reaches the client's eventfd, and the VMM leaving drops its mappings and routes."""

from vbbroker import Broker
from vbguest import guest_test, note


def figures(out):
    line = [l for l in out.splitlines() if l.startswith("figures:")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def run_client(g, sock):
    rc, out = g.run("vfio-user-edu %s" % sock, timeout=180)
    assert rc == 0, "vfio-user-edu: exit %d:\n%s" % (rc, out)
    for line in out.splitlines():
        if line.startswith("  ") or line.startswith("figures:"):
            note(line.strip())
    return figures(out)


def released(b, bdf):
    b.wait_status(bdf, lambda s: s["dma_mappings"] == 0 and s["pinned_bytes"] == 0
                  and sum(i["enabled"] for i in s["irqs"]) == 0,
                  "mappings and interrupt routes dropped after the vfio-user client left")


@guest_test("vfio_user_broker_edu")
def vfio_user_broker_edu(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(edu, opts="--protocol vfio-user")
        assert rep["protocol"] == "vfio-user", rep
        assert rep["socket_path"] == "", rep
        sock = rep["vfio_user_socket_path"]
        assert sock.endswith("/%s.vfio-user.sock" % edu), rep
        st = b.status(edu)
        assert st["protocol"] == "vfio-user" and st["vfio_user_socket_path"] == sock, st
        f = run_client(g, sock)
        assert f["dma_bytes_verified"] == 2048 and f["interrupts"] == 8, f
        released(b, edu)
        # The device serves the next VMM.
        f = run_client(g, sock)
        assert f["interrupts"] == 8, f
        released(b, edu)
        # VMMs that close and reconnect at once all get in (issue 14, finding 5), through the
        # broker's admission each time, and the worker is never taken for hung.
        pid = b.status(edu)["worker_pid"]
        rc, out = g.run("vfio-user-edu --reconnects 200 %s" % sock, timeout=540)
        assert rc == 0, "vfio-user-edu --reconnects: exit %d:\n%s" % (rc, out)
        assert figures(out)["reconnects"] == 200, out
        st = b.status(edu)
        assert st["worker_pid"] == pid and st["restarts"] == 0, st
        released(b, edu)


@guest_test("vfio_user_broker_both_protocols")
def vfio_user_broker_both_protocols(g):
    edu = g.bdf("edu0")
    with Broker(g) as b:
        rep = b.add(edu, opts="--protocol both")
        assert rep["protocol"] == "both", rep
        assert rep["socket_path"].endswith("/%s.sock" % edu), rep
        assert rep["vfio_user_socket_path"].endswith("/%s.vfio-user.sock" % edu), rep
        rc, out = g.run("vfio-demo-vmm edu-dma %s" % rep["socket_path"], timeout=120)
        assert rc == 0, out
        f = run_client(g, rep["vfio_user_socket_path"])
        assert f["dma_bytes_verified"] == 2048, f
        released(b, edu)
        listed = [d for d in b.devices() if d["bdf"] == edu][0]
        assert listed["protocol"] == "both", listed
