/*
 * fuzz_brk_worker: a worker talking to the broker, as the broker sees it. broker/worker.c is
 * compiled in whole (its request table, handlers, handoff and fault handling) over the real VFIO
 * core (DMA table, IRQ routing, device reset) on the fake VFIO kernel of tests/fake_vfio.c. Only
 * the process underneath is replaced (fake_proc.c): the broker gets one end of a socketpair, and
 * its SIGKILL is recorded instead of forking and supervising a sandbox. The
 * input's records (fuzz_msgs.h) are what the worker sends: DMA_MAP with memfds of every kind,
 * DMA_UNMAP, DMA_UNMAP_ALL, SET_IRQS with eventfds and slot tables, RESET, VMM_STATE, VMM_ADMIT,
 * the broker's own types, replies and events nobody asked for.
 *
 * Byte 0: bits 0-1 what the fake worker does with its HANDOFF (0 and 1 acknowledge, 2 refuse,
 * 3 nothing: requests then come before the acknowledgement); bit 2 asks for REMOVAL right after.
 * Checks: the HANDOFF arrives first with exactly the device and the VMM socket; a faulted worker
 * is killed once and none of its later requests is served; nothing crashes; once the worker is
 * freed every mapping is accounted, every handle closed and no fd is left open.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <uv.h>

#include "dma.h"
#include "fake_proc.h"
#include "fake_vfio.h"
#include "irq.h"
#include "log.h"
#include "fuzz_msgs.h"
#include "sysfs_tree.h"
#include "vfio.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BDF "0000:00:03.0"

/* ---- the daemon's side ------------------------------------------------------------------- */

static struct fake_vfio fv;
static int peer; /* the fake worker's end of its broker channel */
static struct brk_container *container;
static struct brk_group *group;
static struct brk_config cfg;
static bool faulted, ready, removal_done;

static void h_ready(void *ctx)
{
	ready = true;
}

static void h_vmm_state(void *ctx, bool connected, uint32_t pid, uint32_t uid)
{
}

static void h_removal_done(void *ctx, bool acknowledged)
{
	removal_done = true;
}

static void h_fault(void *ctx, enum brk_worker_fault kind, const char *reason)
{
	if (faulted)
		fuzz_fail("the broker reported a second fault for one worker (kind %d: %s)", kind,
			  reason);
	if (!reason[0])
		fuzz_fail("the broker reported a fault (kind %d) without a reason", kind);
	faulted = true;
}

static void h_exited(void *ctx, int code, int status)
{
}

static const struct brk_worker_hooks hooks = {h_ready, h_vmm_state, h_removal_done, h_fault,
					      h_exited};

/* An edu-like device on the fake kernel: BAR0, BAR2 with the MSI-X table carved out, config
 * space; INTx, MSI with 1 vector, MSI-X with 8. Built once: the tree and container outlive
 * every input, the device is opened per input. */
static void setup_once(void)
{
	static const struct vfio_region_sparse_mmap_area areas[] = {{0x0, 0x3000},
								    {0x4000, 0xc000}};
	uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	struct vb_err err = {0};

	fake_vfio_init(&fv);
	tree_new(fv.root, sizeof(fv.root));
	tree_pci_device(fv.root, BDF, "vfio-pci", 5);
	fake_region_plain(&fv, 0, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x100000, 0);
	fake_region_sparse(&fv, 2, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x10000, 2ull << 40, areas, 2,
			   true);
	fake_region_plain(&fv, VFIO_PCI_CONFIG_REGION_INDEX, rw, 0x1000, 7ull << 40);
	fake_irq(&fv, VFIO_PCI_INTX_IRQ_INDEX,
		 VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1);
	fake_irq(&fv, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1);
	fake_irq(&fv, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 8);
	fake_irq(&fv, VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD, 1);
	if (brk_container_new(&fv.sys, &err, &container) < 0 ||
	    brk_group_open(&fv.sys, 5, &err, &group) < 0 ||
	    brk_group_attach(group, container, &err) < 0) {
		fuzz_fail("fake VFIO set-up: %s", err.msg);
	}
	cfg.heartbeat_interval_ms = 0;
	cfg.heartbeat_timeout_ms = 1000;
	brk_log_set_level(LOG_CRIT); /* a line per request would be most of the time */
	fake_proc_reset();
	fuzz_uv_warm_up();
}

/* Reads the HANDOFF the broker sent; returns its id. */
static uint32_t read_handoff(void)
{
	uint8_t buf[8192];
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	struct raw_hdr h;
	size_t nfds = 0;
	ssize_t n = recvmsg(peer, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < IPC_HDR_SIZE)
		fuzz_fail("no whole HANDOFF from the broker (recvmsg returned %zd)", n);
	raw_decode(buf, &h);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[4];

		memcpy(fds, CMSG_DATA(cm), k * sizeof(int));
		for (size_t i = 0; i < k; i++)
			close(fds[i]);
		nfds += k;
	}
	if (h.type != 1 /* HANDOFF */ || h.kind != IPC_KIND_REQUEST || nfds != 2)
		fuzz_fail(
		    "the broker's first message is type %u kind %u with %zu fds, not a HANDOFF "
		    "request with 2",
		    h.type, h.kind, nfds);
	return h.id;
}

static void answer_handoff(uint32_t id, bool refuse)
{
	uint8_t err[] = {0x08, 0x16, 0x12, 0x02, 'n', 'o'}; /* vb.Error{code EINVAL, "no"} */
	struct raw_hdr h = {IPC_MAGIC,
			    IPC_PROTO_BROKER,
			    ipc_proto_broker.version,
			    1,
			    refuse ? IPC_KIND_ERROR : IPC_KIND_REPLY,
			    0,
			    id,
			    refuse ? (uint32_t)sizeof(err) : 0};

	if (raw_send(peer, &h, err, refuse ? sizeof(err) : 0, NULL, 0) < 0)
		fuzz_fail("answering the HANDOFF: %m");
}

static void turn(uv_loop_t *loop, int *answers)
{
	for (int i = 0; i < 3; i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		fuzz_drain_count(peer, answers);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct brk_dma_cfg dcfg = {.sys = &fv.sys, .pgsize = 4096};
	struct brk_worker *w = NULL;
	struct brk_vfio_dev *dev;
	struct brk_dma *dma;
	struct brk_dma_stats st;
	struct vb_err err = {0};
	struct fuzz_rec rec;
	uv_loop_t loop;
	int before, lfd, answers = 0, was_faulted;
	uint32_t id = 100;
	uint8_t mode;
	struct brk_worker_args a;
	uint32_t hid;

	if (size < 1)
		return 0;
	if (!container)
		setup_once();
	before = count_fds();
	mode = data[0];
	data++;
	size--;
	fv.ncalls = 0;
	faulted = ready = removal_done = false;
	if (brk_vfio_dev_open(group, BDF, &err, &dev) < 0) {
		fuzz_fail("opening the fake device: %s", err.msg);
	}
	dcfg.container_fd = brk_container_fd(container);
	dcfg.limits = (struct brk_dma_limits){.max_mappings = 8, .max_pinned_bytes = 1u << 20};
	if (brk_dma_new(&dcfg, &dma) < 0 || uv_loop_init(&loop) < 0)
		fuzz_fail("set-up: the DMA table or the loop");
	lfd = fuzz_listener(SOCK_SEQPACKET);
	a = (struct brk_worker_args){
	    .cfg = &cfg,
	    .uid = 61000,
	    .gid = 61000,
	    .dev = dev,
	    .dma = dma,
	    .owner = 1,
	    .bdf = BDF,
	    .vm = "vm1",
	    .owner_uid = 1000,
	    .owner_gid = 1000,
	    .allow_mmap = true,
	    .max_dma_mappings = 8,
	    .max_pinned_bytes = 1u << 20,
	    .iommu_pgsize = 4096,
	    .protocols = BRK_PROTO_NATIVE,
	    .vmm_listen_fd = lfd,
	    .vfu_listen_fd = -1,
	    .hooks = &hooks,
	};
	if (brk_worker_start(&loop, &a, &w, &err) < 0)
		fuzz_fail("brk_worker_start: %s", err.msg);
	close(lfd);
	peer = fake_procs[0].peer;
	hid = read_handoff();
	if ((mode & 3) < 3) {
		answer_handoff(hid, (mode & 3) == 2);
		turn(&loop, &answers);
		if (ready != ((mode & 3) < 2) || faulted != ((mode & 3) == 2))
			fuzz_fail("after a HANDOFF %s, the worker is %sready and %sfaulted",
				  (mode & 3) == 2 ? "refused" : "answered", ready ? "" : "not ",
				  faulted ? "" : "not ");
	}
	if ((mode & 4) && brk_worker_request_removal(w, 1000) == 0)
		turn(&loop, &answers);
	while (fuzz_rec_next(&data, &size, &rec)) {
		was_faulted = faulted;
		answers = 0;
		(void)fuzz_rec_send(peer, &ipc_proto_broker, id++, &rec);
		turn(&loop, &answers);
		/* A faulted worker's requests are not served: no successful reply (ipc may still
		 * refuse a malformed one with an error). */
		if (was_faulted && answers)
			fuzz_fail("a faulted worker's request got %d successful replies", answers);
	}
	if (fake_proc_kills != (faulted ? 1 : 0))
		fuzz_fail("the worker was killed %d times, %s faulted", fake_proc_kills,
			  faulted ? "once" : "never");
	brk_worker_free(w);
	fake_proc_reset();
	uv_run(&loop, UV_RUN_NOWAIT);
	fuzz_loop_close(&loop);
	brk_dma_stats(dma, &st);
	if (st.mappings > 8 || st.pinned_bytes > (1u << 20))
		fuzz_fail("the DMA quota did not hold: %u mappings, %llu bytes pinned",
			  (unsigned)st.mappings, (unsigned long long)st.pinned_bytes);
	brk_dma_free(dma);
	(void)brk_irq_disable_all(brk_vfio_dev_irqs(dev));
	brk_vfio_dev_free(dev);
	fuzz_fds_check(before);
	return 0;
}
