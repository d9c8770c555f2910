/*
 * Integration test of the vfio-worker binary in standalone mode: the worker serves the
 * hand-built PCIe image on a socket (with its seccomp filter loaded, except in sanitizer builds)
 * and the test talks to it over ipc as a VMM would: hello, device info, config reads, region
 * info with mappable areas, events, malformed requests answered with errors, a second VMM
 * refused, disconnect and reconnect (also right after closing, many times), and a VMM that
 * never reads its replies (the worker keeps serving others and drops it past its budget).
 * Nothing here waits for a time to pass: progress is judged by what the worker answers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "common.pb-c.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "ipc_test.h"
#include "test_memfd.h"

#ifndef VB_WORKER_SECCOMP_OVERRIDE
#define VB_WORKER_SECCOMP_OVERRIDE VB_WORKER_SECCOMP
#endif

/* How long a test waits for the worker's answer before it calls it lost: long, because a busy
 * machine can starve the worker for seconds; an answer that never comes still fails. */
#define WAIT_MS 60000

struct fx {
	pid_t pid;
	char dir[64];
	char sock[128];
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/vb-worker-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/vmm.sock", f->dir);
	f->pid = fork();
	if (f->pid == 0) {
		char *argv[] = {VB_WORKER_BIN,
				"--device-image=" VB_FIXTURES "/pcie_spec_sriov_ari_rebar.img",
				"--listen",
				f->sock,
				"--seccomp=" VB_WORKER_SECCOMP_OVERRIDE,
				NULL};

		execv(argv[0], argv);
		_exit(127);
	}
	/* The worker listens once it is ready; a connection that closes at once is a VMM that
	 * came and went, which the worker sorts out before it judges the next one. The bound is
	 * only there so that a worker that never comes up fails the test instead of hanging it. */
	for (int i = 0; i < 6000; i++) {
		int fd;

		if (ipc_connect(f->sock, &fd) == 0) {
			close(fd);
			*state = f;
			return 0;
		}
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid)
			return -1;
		sleep_ms(10);
	}
	return -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int status = 0;

	kill(f->pid, SIGTERM);
	waitpid(f->pid, &status, 0);
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
	/* SIGTERM ends the worker with status 0; a seccomp kill would show as SIGSYS. */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static struct ipc_chan *connect_vmm(struct fx *f)
{
	int fd;
	struct ipc_chan *c;

	assert_int_equal(ipc_connect(f->sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_device, NULL, &c), 0);
	return c;
}

static int call(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body,
		struct ipc_msg **ret, struct ipc_error *err)
{
	return ipc_chan_call(c, type, body, NULL, 0, WAIT_MS, ret, err);
}

static void hello(struct ipc_chan *c)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	struct ipc_msg *m;
	const Vb__Dev__HelloReply *rep;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	h.client = "test";
	assert_int_equal(call(c, VB__DEV__TYPE__HELLO, &h.base, &m, NULL), 0);
	rep = (const Vb__Dev__HelloReply *)m->body;
	assert_int_equal(rep->version, VB__DEV__VERSION__VERSION_CURRENT);
	assert_string_equal(rep->bdf, "0000:03:00.0");
	assert_non_null(rep->limits);
	assert_true(rep->limits->max_fds > 0);
	assert_int_equal(rep->broker_wait_ms, 0); /* no broker to wait for */
	ipc_msg_free(m);
}

static uint32_t cfg_read(struct ipc_chan *c, uint32_t off, uint32_t size)
{
	Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;
	struct ipc_msg *m;
	const Vb__Dev__Data *d;
	uint32_t v = 0;

	req.offset = off;
	req.size = size;
	assert_int_equal(call(c, VB__DEV__TYPE__CFG_READ, &req.base, &m, NULL), 0);
	d = (const Vb__Dev__Data *)m->body;
	assert_int_equal(d->data.len, size);
	for (uint32_t i = 0; i < size && i < 4; i++)
		v |= (uint32_t)d->data.data[i] << (8 * i);
	ipc_msg_free(m);
	return v;
}

static int cfg_write(struct ipc_chan *c, uint32_t off, uint32_t size, uint32_t v)
{
	Vb__Dev__CfgWrite req = VB__DEV__CFG_WRITE__INIT;
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	struct ipc_msg *m = NULL;
	int r;

	req.offset = off;
	req.data.data = b;
	req.data.len = size;
	r = call(c, VB__DEV__TYPE__CFG_WRITE, &req.base, &m, NULL);
	ipc_msg_free(m);
	return r;
}

static void test_worker_standalone_hello_info_and_vendor_id(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_msg *m;
	Vb__Empty e = VB__EMPTY__INIT;
	const Vb__Dev__DeviceInfo *di;

	hello(c);
	assert_int_equal(call(c, VB__DEV__TYPE__DEVICE_INFO, &e.base, &m, NULL), 0);
	di = (const Vb__Dev__DeviceInfo *)m->body;
	assert_int_equal(di->vendor_id, 0x1234);
	assert_int_equal(di->device_id, 0x5678);
	assert_int_equal(di->class_code, 0x020000);
	assert_int_equal(di->num_regions, VFIO_PCI_NUM_REGIONS);
	assert_true(di->flags & VFIO_DEVICE_FLAGS_PCI);
	ipc_msg_free(m);
	assert_int_equal(cfg_read(c, PCI_VENDOR_ID, 2), 0x1234);
	/* The emulation is in place: multi-function bit masked, SR-IOV hidden. */
	assert_int_equal(cfg_read(c, PCI_HEADER_TYPE, 1), 0);
	assert_int_equal(cfg_read(c, 0x100, 2), 0);
	ipc_chan_free(c);
}

static void test_worker_standalone_region_info_excludes_msix_pages(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	Vb__Dev__RegionInfoRequest req = VB__DEV__REGION_INFO_REQUEST__INIT;
	struct ipc_msg *m;
	const Vb__Region *r;

	hello(c);
	req.index = 2;
	assert_int_equal(call(c, VB__DEV__TYPE__REGION_INFO, &req.base, &m, NULL), 0);
	r = (const Vb__Region *)m->body;
	assert_int_equal(r->size, 0x4000);
	assert_int_equal(r->offset, 2ull << 40);
	assert_int_equal(r->n_mmap_areas, 2);
	assert_int_equal(r->mmap_areas[0]->offset, 0x1000);
	assert_int_equal(r->mmap_areas[1]->offset, 0x3000);
	assert_int_equal(m->nfds, 1); /* the device (memfd) for mmap */
	ipc_msg_free(m);
	req.index = 3; /* I/O BAR: nothing to map, no fd */
	assert_int_equal(call(c, VB__DEV__TYPE__REGION_INFO, &req.base, &m, NULL), 0);
	assert_int_equal(m->nfds, 0);
	assert_int_equal(((const Vb__Region *)m->body)->flags & VFIO_REGION_INFO_FLAG_MMAP, 0);
	ipc_msg_free(m);
	ipc_chan_free(c);
}

static void test_worker_standalone_malformed_requests_get_errors(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	Vb__Empty e = VB__EMPTY__INIT;
	Vb__Dev__CfgRead cr = VB__DEV__CFG_READ__INIT;
	Vb__Dev__RegionRead rr = VB__DEV__REGION_READ__INIT;
	Vb__Dev__IrqInfoRequest ir = VB__DEV__IRQ_INFO_REQUEST__INIT;
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;
	Vb__Dev__SetIrqFds sf = VB__DEV__SET_IRQ_FDS__INIT;
	uint8_t junk[40] = {0x56, 0x42, 0x52, 0x4b, 3,	  0,	1,    0,  5,
			    0,	  1,	0,    0xf0, 0xff, 0xff, 0x7f, 30, 0};
	struct pollfd p;

	/* Before HELLO. */
	assert_int_equal(call(c, VB__DEV__TYPE__DEVICE_INFO, &e.base, &m, &err), -EPROTO);
	assert_non_null(strstr(err.message, "HELLO"));
	hello(c);
	cr.offset = 4095;
	cr.size = 4;
	assert_int_equal(call(c, VB__DEV__TYPE__CFG_READ, &cr.base, &m, &err), -EINVAL);
	cr.offset = 0;
	cr.size = 0;
	assert_int_equal(call(c, VB__DEV__TYPE__CFG_READ, &cr.base, &m, &err), -EINVAL);
	rr.index = 0;
	rr.offset = UINT64_MAX - 1;
	rr.size = 4;
	assert_int_equal(call(c, VB__DEV__TYPE__REGION_READ, &rr.base, &m, &err), -EINVAL);
	assert_non_null(strstr(err.message, "region 0"));
	ir.index = 99;
	assert_int_equal(call(c, VB__DEV__TYPE__IRQ_INFO, &ir.base, &m, &err), -EINVAL);
	du.iova = 0x1000;
	du.size = 0x1001;
	assert_int_equal(call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, &m, &err), -EINVAL);
	assert_non_null(strstr(err.message, "aligned"));
	sf.index = VFIO_PCI_MSIX_IRQ_INDEX;
	sf.count = 2; /* but no fds attached */
	assert_int_equal(call(c, VB__DEV__TYPE__SET_IRQ_FDS, &sf.base, &m, &err), -EINVAL);
	/* A datagram whose header claims more body than it carries: the worker's channel answers
	 * it with an error (for a request id this client never used, so our channel calls it
	 * unsolicited) and the session goes on. */
	assert_int_equal(send(ipc_chan_fd(c), junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	p = (struct pollfd){.fd = ipc_chan_fd(c), .events = POLLIN};
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_int_equal(ipc_chan_recv(c, &m), -EPROTO);
	/* Still serving. */
	assert_int_equal(cfg_read(c, PCI_VENDOR_ID, 2), 0x1234);
	ipc_chan_free(c);
}

static void test_worker_standalone_second_vmm_refused_then_reconnect(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *a = connect_vmm(f), *b;
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	const Vb__Dev__Event *ev;
	bool found = false;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	hello(a);
	/* Program a BAR and enable memory decoding: the VMM hears about it. */
	assert_int_equal(cfg_write(a, PCI_BASE_ADDRESS_2, 4, 0xfe000000), 0);
	assert_int_equal(cfg_write(a, PCI_COMMAND, 2, PCI_COMMAND_MEMORY), 0);
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	ev = (const Vb__Dev__Event *)m->body;
	assert_int_equal(ev->kind, VB__DEV__EVENT_KIND__EVENT_BARS_CHANGED);
	for (size_t i = 0; i < ev->n_bars; i++)
		if (ev->bars[i]->index == 2) {
			assert_int_equal(ev->bars[i]->address, 0xfe000000);
			assert_true(ev->bars[i]->enabled);
			found = true;
		}
	assert_true(found);
	ipc_msg_free(m);

	b = connect_vmm(f);
	assert_int_equal(call(b, VB__DEV__TYPE__HELLO, &h.base, &m, &err), -EBUSY);
	ipc_chan_free(b);

	/* The first VMM leaves; the device keeps its state and the next one gets in at once. */
	ipc_chan_free(a);
	b = connect_vmm(f);
	hello(b);
	assert_int_equal(cfg_read(b, PCI_BASE_ADDRESS_2, 4), 0xfe000000);
	assert_int_equal(cfg_read(b, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	ipc_chan_free(b);
}

static int dma_map(struct ipc_chan *c, const Vb__DmaMap *dm, int fd, struct ipc_error *err)
{
	struct ipc_msg *m = NULL;
	int r = ipc_chan_call(c, VB__DEV__TYPE__DMA_MAP, &dm->base, &fd, 1, WAIT_MS, &m, err);

	ipc_msg_free(m);
	return r;
}

static void test_worker_standalone_dma_validated_locally(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	int mfd;
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int tfd;
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;

	hello(c);
	mfd = test_memfd(1 << 20, F_SEAL_SHRINK);
	dm.iova = 0x100000;
	dm.size = 1 << 20;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ | VB__DEV__DMA_PROT__DMA_PROT_WRITE;
	assert_int_equal(dma_map(c, &dm, mfd, &err), 0);
	/* Overlap, then past the memfd's end, then a plain file instead of a memfd: the broker's
	 * codes. */
	assert_int_equal(dma_map(c, &dm, mfd, &err), -EEXIST);
	dm.iova = 0x400000;
	dm.offset = 0x1000;
	assert_int_equal(dma_map(c, &dm, mfd, &err), -ERANGE);
	tfd = open(VB_FIXTURES "/edu.img", O_RDONLY | O_CLOEXEC);
	dm.offset = 0;
	dm.size = 0x1000;
	assert_int_equal(dma_map(c, &dm, tfd, &err), -EACCES);
	du.iova = 0x100000;
	du.size = 1 << 20;
	assert_int_equal(call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, &m, &err), 0);
	ipc_msg_free(m);
	assert_int_equal(call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, &m, &err), -ENOENT);
	close(tfd);
	close(mfd);
	ipc_chan_free(c);
}

static int dma_unmap(struct ipc_chan *c, uint64_t iova, uint64_t size)
{
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	int r;

	du.iova = iova;
	du.size = size;
	r = call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, &m, &err);
	ipc_msg_free(m);
	return r;
}

/* As the broker (broker/dma.c): an unmap names exactly one mapping, so one over two mappings,
 * or over part of one, is ENOENT and removes nothing; the bytes quota is EDQUOT (the default
 * 64 GiB, on a sparse memfd: standalone maps nothing), the mapping quota ENOSPC. */
static void test_worker_standalone_dma_unmap_exact_quota_codes_as_broker(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_error err = {0};
	int mfd = test_memfd(1 << 20, F_SEAL_SHRINK);
	int big = test_memfd(1 << 20, 0);
	Vb__DmaMap dm = VB__DMA_MAP__INIT;

	hello(c);
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	dm.size = 0x80000;
	dm.iova = 0x100000;
	assert_int_equal(dma_map(c, &dm, mfd, &err), 0);
	dm.iova = 0x180000;
	dm.offset = 0x80000;
	assert_int_equal(dma_map(c, &dm, mfd, &err), 0);
	assert_int_equal(dma_unmap(c, 0x100000, 0x100000), -ENOENT);
	assert_int_equal(dma_unmap(c, 0x100000, 0x40000), -ENOENT);
	assert_int_equal(dma_map(c, &dm, mfd, &err), -EEXIST); /* both still there */
	dm.iova = 0x100000;
	dm.offset = 0;
	assert_int_equal(dma_map(c, &dm, mfd, &err), -EEXIST);
	assert_int_equal(dma_unmap(c, 0x180000, 0x80000), 0);
	assert_int_equal(dma_unmap(c, 0x100000, 0x80000), 0);
	assert_int_equal(dma_unmap(c, 0x100000, 0x80000), -ENOENT);

	/* 64 GiB fit the default quota exactly; one page more does not. */
	assert_int_equal(ftruncate(big, 65ll << 30), 0);
	assert_int_equal(fcntl(big, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	dm.iova = 1ull << 40;
	dm.size = 64ull << 30;
	assert_int_equal(dma_map(c, &dm, big, &err), 0);
	dm.iova = 2ull << 40;
	dm.size = 0x1000;
	assert_int_equal(dma_map(c, &dm, big, &err), -EDQUOT);
	assert_int_equal(dma_unmap(c, 1ull << 40, 64ull << 30), 0);
	assert_int_equal(dma_map(c, &dm, big, &err), 0);
	/* 4096 mappings, the default quota: the 4097th is ENOSPC. */
	for (uint64_t i = 1; i < 4096; i++) {
		dm.iova = (2ull << 40) + i * 0x1000;
		assert_int_equal(dma_map(c, &dm, big, &err), 0);
	}
	dm.iova = 3ull << 40;
	assert_int_equal(dma_map(c, &dm, big, &err), -ENOSPC);
	close(big);
	close(mfd);
	ipc_chan_free(c);
}

/* Entries of the worker's /proc/PID/fd. */
static int worker_fds(struct fx *f)
{
	int n = count_pid_fds(f->pid);

	assert_true(n >= 0);
	return n;
}

/* A VMM with thousands of requests in flight whose own sends wait for socket space (they
 * never sit in its own send queue, so the worker sees them). */
static struct ipc_chan *connect_greedy(struct fx *f)
{
	struct ipc_limits l = ipc_limits_default;
	struct ipc_chan *c;
	int fd;

	l.max_outstanding = 4096;
	l.queue_msgs = 0;
	l.send_timeout_ms = 60000;
	assert_int_equal(ipc_connect(f->sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_device, &l, &c), 0);
	return c;
}

static int read_all_config(struct ipc_chan *c)
{
	Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;

	req.offset = 0;
	req.size = 4096;
	return ipc_chan_request(c, VB__DEV__TYPE__CFG_READ, &req.base, NULL, 0, NULL);
}

static struct ipc_msg *recv_wait(struct ipc_chan *c)
{
	struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};
	struct ipc_msg *m = NULL;
	int r;

	while ((r = ipc_chan_recv(c, &m)) == -EAGAIN)
		assert_int_equal(poll(&p, 1, -1), 1);
	assert_int_equal(r, 0);
	return m;
}

static void test_worker_standalone_vmm_not_reading_others_served_then_dropped(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *a = connect_greedy(f), *b;
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	uint32_t last = 0;
	int i, r, n = 200;
	int base;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	hello(a);
	base = worker_fds(f);
	/* 200 replies of 4 KiB: more than the VMM's socket holds, less than the worker's send
	 * queue budget (1 MiB). The VMM reads none of them yet. */
	for (i = 0; i < n; i++)
		assert_int_equal(read_all_config(a), 0);
	/* Another VMM is answered meanwhile. Before the send queue, the worker waited 1 s for each
	 * reply the first VMM's socket could not take, and this answer came minutes later. */
	b = connect_vmm(f);
	assert_int_equal(
	    ipc_chan_call(b, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, WAIT_MS, &m, &err), -EBUSY);
	ipc_chan_free(b);
	/* Nothing was lost: every reply arrives, in order, as the first VMM reads. */
	for (i = 0; i < n; i++) {
		m = recv_wait(a);
		assert_int_equal(m->kind, IPC_KIND_REPLY);
		assert_true(m->id > last);
		last = m->id;
		assert_int_equal(((const Vb__Dev__Data *)m->body)->data.len, 4096);
		ipc_msg_free(m);
	}
	assert_int_equal(cfg_read(a, PCI_VENDOR_ID, 2), 0x1234);
	/* Past the budget, the worker lets the VMM go rather than wait for it. */
	for (i = 0; i < 4000; i++) {
		r = read_all_config(a);
		if (r == -EPIPE || r == -ECONNRESET)
			break;
		assert_int_equal(r, 0);
	}
	assert_true(i < 4000);
	ipc_chan_free(a);
	/* The next VMM gets in, and the dropped one left no fd behind. */
	b = connect_vmm(f);
	hello(b);
	assert_int_equal(worker_fds(f), base);
	ipc_chan_free(b);
}

static void test_worker_standalone_quick_reconnects_admitted(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *a = connect_greedy(f);

	hello(a);
	/* The hangup of a VMM that closes with requests still unread by the worker (more than
	 * the worker serves per wakeup) comes after its next connection in the worker's loop.
	 * Stopping the worker while this happens puts both in front of it at once. */
	assert_int_equal(kill(f->pid, SIGSTOP), 0);
	for (int i = 0; i < 150; i++)
		assert_int_equal(read_all_config(a), 0);
	ipc_chan_free(a);
	a = connect_vmm(f);
	assert_int_equal(kill(f->pid, SIGCONT), 0);
	hello(a);
	ipc_chan_free(a);
	/* And plain close-and-reconnect, many times over. */
	for (int i = 0; i < 200; i++) {
		a = connect_vmm(f);
		hello(a);
		assert_int_equal(cfg_read(a, PCI_VENDOR_ID, 2), 0x1234);
		ipc_chan_free(a);
	}
}

/* What the broker refuses, standalone refuses too, with the same code (issue 14, finding 6). */
static void test_worker_standalone_dma_memfd_checked_as_broker(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_error err = {0};
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int unsealed;
	int mfd;
	char path[64];
	int ro;
	int wsealed;
	char tpath[] = "/dev/shm/vb-test-XXXXXX";
	int tfd;

	hello(c);
	dm.iova = 0x100000;
	dm.size = 0x1000;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ | VB__DEV__DMA_PROT__DMA_PROT_WRITE;
	/* Not sealed against shrinking: pinned pages could be truncated away. */
	unsealed = memfd_create("guest-ram", MFD_CLOEXEC);
	assert_true(unsealed >= 0);
	assert_int_equal(ftruncate(unsealed, 0x1000), 0);
	assert_int_equal(dma_map(c, &dm, unsealed, &err), -EPERM);
	assert_non_null(strstr(err.message, "F_SEAL_SHRINK"));
	/* Read-only for read-write DMA; the same fd serves read-only DMA. */
	mfd = test_memfd(0x1000, F_SEAL_SHRINK);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
	assert_int_equal(dma_map(c, &dm, ro, &err), -EACCES);
	assert_non_null(strstr(err.message, "read-only"));
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	assert_int_equal(dma_map(c, &dm, ro, &err), 0);
	/* Sealed against writing, for read-write DMA. */
	wsealed = test_memfd(0x1000, F_SEAL_SHRINK | F_SEAL_WRITE);
	dm.iova = 0x200000;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ | VB__DEV__DMA_PROT__DMA_PROT_WRITE;
	assert_int_equal(dma_map(c, &dm, wsealed, &err), -EACCES);
	assert_non_null(strstr(err.message, "sealed against writing"));
	/* A tmpfs file opened by path is not a memfd, whatever its file system. */
	tfd = mkstemp(tpath);
	assert_true(tfd >= 0);
	unlink(tpath);
	assert_int_equal(ftruncate(tfd, 0x1000), 0);
	assert_int_equal(dma_map(c, &dm, tfd, &err), -EACCES);
	close(tfd);
	close(wsealed);
	close(ro);
	close(mfd);
	close(unsealed);
	ipc_chan_free(c);
}

static void test_worker_standalone_irqfd_must_be_eventfd(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = connect_vmm(f);
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	Vb__Dev__SetIrqFds sf = VB__DEV__SET_IRQ_FDS__INIT;
	int p[2];
	int efd;

	hello(c);
	sf.index = VFIO_PCI_INTX_IRQ_INDEX;
	sf.count = 1;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__SET_IRQ_FDS, &sf.base, &p[0], 1, WAIT_MS, &m, &err),
	    -EACCES);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__SET_IRQ_FDS, &sf.base, &efd, 1, WAIT_MS, &m, &err), 0);
	ipc_msg_free(m);
	close(efd);
	close(p[0]);
	close(p[1]);
	ipc_chan_free(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_worker_standalone_hello_info_and_vendor_id),
	    T(test_worker_standalone_region_info_excludes_msix_pages),
	    T(test_worker_standalone_malformed_requests_get_errors),
	    T(test_worker_standalone_second_vmm_refused_then_reconnect),
	    T(test_worker_standalone_dma_validated_locally),
	    T(test_worker_standalone_dma_unmap_exact_quota_codes_as_broker),
	    T(test_worker_standalone_dma_memfd_checked_as_broker),
	    T(test_worker_standalone_irqfd_must_be_eventfd),
	    T(test_worker_standalone_vmm_not_reading_others_served_then_dropped),
	    T(test_worker_standalone_quick_reconnects_admitted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
