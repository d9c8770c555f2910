/*
 * test_ring_defer: the ring and the deferred-reply interface (worker/defer.h) together. The real
 * VMM server of the worker (server*.c, ring.c, defer.c, the device emulation on edu.img) runs on a
 * loop in this thread with a backend that answers interrupt routing only when the test says so,
 * as the broker answers later; the test is the VMM, writing the ring's page and its socket by
 * hand, and turns the loop itself. An access whose answer waits for the backend (an MSI enable)
 * is answered once the backend has answered, and nothing after it, on the ring or the socket, is
 * served before.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <uv.h>

#include "device.pb-c.h"
#include "devimg.h"
#include "ipc.h"
#include "ipc_ring.h"
#include "server.h"
#include "standalone.h"
#include "wkr.h"

/* The backend: standalone's, but interrupt routing asked for while a defer collects is held
 * until release() (then it is applied and its defer completed). */
struct slow {
	struct wkr_local *local;
	struct wkr_defer *collecting;
	struct wkr_defer *held; /* a routing call counted and not answered yet */
	struct wkr_irq_set held_set;
	unsigned routed;
};

static int slow_set_irqs(void *ctx, const struct wkr_irq_set *s)
{
	struct slow *b = ctx;

	if (!b->collecting)
		return wkr_local_ops.set_irqs(b->local, s);
	assert_null(b->held); /* one at a time is all this test makes */
	b->held = b->collecting;
	b->held_set = *s;
	b->held_set.fds = NULL; /* not kept: the test routes no VMM fds */
	wkr_defer_add(b->held);
	return 0;
}

static void slow_release(struct slow *b)
{
	struct wkr_defer *d = b->held;

	assert_non_null(d);
	b->held = NULL;
	b->routed++;
	wkr_defer_complete(d, 0, NULL);
}

static int slow_dma_map(void *ctx, uint64_t iova, uint64_t size, uint64_t off, uint32_t prot,
			int fd, struct vb_err *err)
{
	struct slow *b = ctx;

	return wkr_local_ops.dma_map(b->local, iova, size, off, prot, fd, err);
}

static int slow_dma_unmap(void *ctx, uint64_t iova, uint64_t size, struct vb_err *err)
{
	struct slow *b = ctx;

	return wkr_local_ops.dma_unmap(b->local, iova, size, err);
}

static int slow_dma_unmap_all(void *ctx)
{
	struct slow *b = ctx;

	return wkr_local_ops.dma_unmap_all(b->local);
}

static int slow_reset(void *ctx, struct vb_err *err)
{
	struct slow *b = ctx;

	return wkr_local_ops.reset(b->local, err);
}

static void slow_vmm_state(void *ctx, bool connected, pid_t pid, uid_t uid)
{
	struct slow *b = ctx;

	wkr_local_ops.vmm_state(b->local, connected, pid, uid);
}

static int slow_vmm_admit(void *ctx, int fd, uid_t owner, struct wkr_admit *ret)
{
	struct slow *b = ctx;

	return wkr_local_ops.vmm_admit(b->local, fd, owner, ret);
}

static void slow_collect(void *ctx, struct wkr_defer *d)
{
	struct slow *b = ctx;

	b->collecting = d;
}

static void slow_forget(void *ctx, struct wkr_defer *d)
{
	struct slow *b = ctx;

	if (b->held == d)
		b->held = NULL;
}

static const struct wkr_backend_ops slow_ops = {
    .dma_map = slow_dma_map,
    .dma_unmap = slow_dma_unmap,
    .dma_unmap_all = slow_dma_unmap_all,
    .set_irqs = slow_set_irqs,
    .reset = slow_reset,
    .vmm_state = slow_vmm_state,
    .vmm_admit = slow_vmm_admit,
    .collect = slow_collect,
    .forget = slow_forget,
};

/* The device's routing goes to the backend, as worker/main.c wires it. */
static int dev_set_irqs(void *data, const struct wkr_irq_set *s)
{
	return slow_set_irqs(data, s);
}

static void dev_bars_changed(void *data, uint16_t command)
{
}

struct rig {
	struct slow b;
	struct wkr_image *img;
	struct wkr_dev *dev;
	struct wkr_server *srv;
	uv_loop_t loop;
	int memfd;
	struct ipc_chan *vmm;
	struct vb_ring_page *page;
	int efd;
	uint32_t seq;
};

static void turn(struct rig *g)
{
	for (int i = 0; i < 4; i++)
		uv_run(&g->loop, UV_RUN_NOWAIT);
}

/* The next message the worker sent the VMM (events skipped), or NULL when none waits. */
static struct ipc_msg *answer(struct rig *g)
{
	struct ipc_msg *m;

	while (ipc_chan_recv(g->vmm, &m) == 0) {
		if (m->kind != IPC_KIND_EVENT)
			return m;
		ipc_msg_free(m);
	}
	return NULL;
}

static void rig_start(struct rig *g)
{
	struct wkr_callbacks cb = {dev_set_irqs, dev_bars_changed, &g->b};
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	Vb__Dev__RingOffer o = VB__DEV__RING_OFFER__INIT;
	struct vb_err err = {0};
	struct wkr_io io;
	struct ipc_msg *m;
	int ring_fd;
	uint32_t id;
	void *p;

	memset(g, 0, sizeof(*g));
	assert_int_equal(wkr_image_load(VB_FIXTURES "/edu.img", &g->img, &err), 0);
	assert_int_equal(wkr_image_build(g->img, &g->memfd), 0);
	assert_int_equal(wkr_local_new(g->img, g->memfd, 8, 1u << 20, &g->b.local), 0);
	wkr_io_from_fd(&io, g->memfd);
	assert_int_equal(wkr_dev_new(wkr_image_info(g->img), &io, &cb, &g->dev), 0);
	assert_int_equal(uv_loop_init(&g->loop), 0);
	/* A listening socket and the VMM's connection to it. */
	{
		char path[] = "/tmp/vfb-ring-defer-XXXXXX";
		char sock[64];
		int lfd, cfd;
		struct wkr_server_cfg sc;

		assert_non_null(mkdtemp(path));
		snprintf(sock, sizeof(sock), "%s/s", path);
		assert_int_equal(ipc_listen(sock, 0600, 4, &lfd), 0);
		sc = (struct wkr_server_cfg){
		    .loop = &g->loop,
		    .listen_fd = lfd,
		    .dev = g->dev,
		    .backend = {&slow_ops, &g->b},
		    .owner_uid = getuid(),
		    .iommu_pgsize = 4096,
		    .max_dma_mappings = 8,
		    .max_pinned_bytes = 1u << 20,
		};
		assert_int_equal(wkr_server_new(&sc, &g->srv), 0);
		assert_int_equal(ipc_connect(sock, &cfd), 0);
		unlink(sock);
		rmdir(path);
		assert_int_equal(ipc_chan_new(cfd, &ipc_proto_device, NULL, &g->vmm), 0);
	}
	turn(g);
	assert_true(wkr_server_connected(g->srv));
	/* HELLO with a ring. */
	ring_fd = memfd_create("ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_int_equal(ftruncate(ring_fd, VB_RING_SIZE), 0);
	assert_int_equal(fcntl(ring_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	p = mmap(NULL, VB_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
	assert_true(p != MAP_FAILED);
	g->page = p;
	g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	o.layout = VB_RING_LAYOUT;
	h.ring = &o;
	assert_int_equal(ipc_chan_request(g->vmm, VB__DEV__TYPE__HELLO, &h.base,
					  (int[]){ring_fd, g->efd}, 2, &id),
			 0);
	close(ring_fd);
	turn(g);
	m = answer(g);
	assert_non_null(m);
	assert_true(((const Vb__Dev__HelloReply *)m->body)->ring->accepted);
	ipc_msg_free(m);
}

static void rig_stop(struct rig *g)
{
	ipc_chan_free(g->vmm);
	turn(g);
	wkr_server_close(g->srv, NULL, NULL);
	turn(g);
	assert_int_equal(uv_loop_close(&g->loop), 0);
	munmap(g->page, VB_RING_SIZE);
	close(g->efd);
	wkr_dev_free(g->dev);
	wkr_local_free(g->b.local);
	wkr_image_free(g->img);
	close(g->memfd);
}

/* Posts the next ring request and rings the doorbell; returns its number. */
static uint32_t post(struct rig *g, uint32_t op, uint64_t offset, uint32_t size, const void *data)
{
	uint64_t one = 1;

	g->page->vmm.op = op;
	g->page->vmm.index = 0;
	g->page->vmm.offset = offset;
	g->page->vmm.size = size;
	if (data)
		memcpy(g->page->vmm.data, data, size);
	atomic_store(&g->page->vmm.seq, ++g->seq);
	assert_int_equal(write(g->efd, &one, sizeof(one)), sizeof(one));
	return g->seq;
}

static uint32_t answered(struct rig *g)
{
	return atomic_load(&g->page->wkr.seq);
}

static const uint8_t msi_on[2] = {PCI_MSI_FLAGS_ENABLE, 0};

/* edu's MSI capability is at 0x40: enabling it makes the worker route the vector. */
#define MSI_FLAGS (0x40 + PCI_MSI_FLAGS)

static void test_ring_defer_msi_enable_answered_after_backend_next_held(void **state)
{
	struct rig g;
	uint32_t first, second;
	uint16_t flags = 0;

	rig_start(&g);
	first = post(&g, VB__DEV__TYPE__CFG_WRITE, MSI_FLAGS, 2, msi_on);
	turn(&g);
	/* The routing waits in the backend: the write is not answered yet... */
	assert_non_null(g.b.held);
	assert_int_equal(answered(&g), 0);
	/* ...and the next request on the ring is not read meanwhile, however long. */
	second = post(&g, VB__DEV__TYPE__CFG_READ, MSI_FLAGS, 2, NULL);
	turn(&g);
	turn(&g);
	assert_int_equal(answered(&g), 0);
	/* The backend answers: the write is answered, then the read, in that order. */
	slow_release(&g.b);
	turn(&g);
	assert_int_equal(g.b.routed, 1);
	assert_true(answered(&g) == first || answered(&g) == second);
	turn(&g);
	assert_int_equal(answered(&g), second);
	assert_int_equal(g.page->wkr.status, 0);
	memcpy(&flags, g.page->wkr.data, 2);
	assert_true(flags & PCI_MSI_FLAGS_ENABLE);
	rig_stop(&g);
}

/* A request of the socket that waits for the backend holds the ring back too; the ring goes on
 * once the socket's request is answered. */
static void test_ring_defer_socket_request_waiting_holds_ring(void **state)
{
	Vb__Dev__CfgWrite w = VB__DEV__CFG_WRITE__INIT;
	struct ipc_msg *m;
	struct rig g;
	uint32_t id, seq;

	rig_start(&g);
	w.offset = MSI_FLAGS;
	w.data.data = (uint8_t *)msi_on;
	w.data.len = 2;
	assert_int_equal(ipc_chan_request(g.vmm, VB__DEV__TYPE__CFG_WRITE, &w.base, NULL, 0, &id),
			 0);
	turn(&g);
	assert_non_null(g.b.held);
	assert_null(answer(&g));
	seq = post(&g, VB__DEV__TYPE__CFG_READ, 0, 4, NULL);
	turn(&g);
	turn(&g);
	assert_int_equal(answered(&g), 0); /* held: the session's request waits */
	slow_release(&g.b);
	turn(&g);
	turn(&g);
	m = answer(&g);
	assert_non_null(m);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	assert_int_equal(m->id, id);
	ipc_msg_free(m);
	assert_int_equal(answered(&g), seq);
	assert_int_equal(g.page->wkr.status, 0);
	assert_int_equal(g.page->wkr.size, 4);
	rig_stop(&g);
}

/* The VMM hangs up while its ring request waits for the backend (its session reads nothing
 * meanwhile, so the hang-up is seen once the backend has answered): the session ends, the answer
 * lands on a page no one reads, and nothing is left behind (every handle closes). */
static void test_ring_defer_vmm_gone_while_waiting_nothing_left(void **state)
{
	struct rig g;

	rig_start(&g);
	(void)post(&g, VB__DEV__TYPE__CFG_WRITE, MSI_FLAGS, 2, msi_on);
	turn(&g);
	assert_non_null(g.b.held);
	ipc_chan_free(g.vmm);
	g.vmm = NULL;
	turn(&g);
	if (g.b.held)
		slow_release(&g.b);
	turn(&g);
	assert_false(wkr_server_connected(g.srv));
	{
		int sv[2];

		/* rig_stop frees a channel: give it one that is already hung up. */
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		close(sv[1]);
		assert_int_equal(ipc_chan_new(sv[0], &ipc_proto_device, NULL, &g.vmm), 0);
	}
	rig_stop(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ring_defer_msi_enable_answered_after_backend_next_held),
	    cmocka_unit_test(test_ring_defer_socket_request_waiting_holds_ring),
	    cmocka_unit_test(test_ring_defer_vmm_gone_while_waiting_nothing_left),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
