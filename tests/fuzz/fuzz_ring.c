/*
 * fuzz_ring: a VMM that writes its shared-memory ring (ipc/ipc_ring.h) as it likes. The worker is
 * the real one of standalone mode (its VMM server, request table and handlers, its ring consumer
 * worker/ring.c, the standalone backend, the device emulation) serving the edu, e1000e or nvme
 * image; the VMM connects, has its ring accepted in HELLO, then the input writes the page and
 * rings the doorbell.
 *
 * Byte 0 picks the image (bits 0-1). Then records of [cmd][offset lo][offset hi][len][len bytes]:
 * cmd & 3 is 0: write the bytes into the page at offset (mod the page, clipped at its end);
 * 1: write them, then post the next request (the worker's last answered + 1) and ring;
 * 2: ring the doorbell; 3: let the worker's loop run. The loop runs after each record too.
 *
 * Whatever the page holds, nothing crashes, the worker's loop returns, the socket still answers
 * a config read at the end, and once the VMM hangs up every handle is closed and no fd is left.
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <uv.h>

#include "device.pb-c.h"
#include "fuzz_msgs.h"
#include "fuzz_worker.h"
#include "ipc.h"
#include "ipc_ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ring_fuzz {
	struct ipc_chan *vmm; /* the VMM's end of its connection */
	struct vb_ring_page *page;
	int efd;
};

/* Runs the worker's loop a few turns and reads what it sent; returns the replies that came. */
static int settle(uv_loop_t *loop, struct ring_fuzz *v, int *hello_ok)
{
	int replies = 0;

	for (int i = 0; i < 3; i++) {
		struct ipc_msg *m;

		uv_run(loop, UV_RUN_NOWAIT);
		while (ipc_chan_recv(v->vmm, &m) == 0) {
			if (m->kind == IPC_KIND_REPLY) {
				replies++;
				if (hello_ok && m->type == VB__DEV__TYPE__HELLO) {
					const Vb__Dev__HelloReply *h = (const void *)m->body;

					*hello_ok = h->ring && h->ring->accepted;
				}
			}
			ipc_msg_free(m);
		}
	}
	return replies;
}

/* The VMM's ring: a sealed memfd of the ring's size and a doorbell, offered in HELLO. */
static void offer_ring(uv_loop_t *loop, struct ring_fuzz *v)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	Vb__Dev__RingOffer o = VB__DEV__RING_OFFER__INIT;
	int memfd = fuzz_memfd(VB_RING_SIZE, false), ok = 0;
	uint32_t id;
	void *p;

	if (memfd < 0 || fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		fuzz_fail("set-up: the ring's sealed memfd: %m");
	v->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p = mmap(NULL, VB_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (v->efd < 0 || p == MAP_FAILED)
		fuzz_fail("set-up: the ring's doorbell or its mapping: %m");
	v->page = p;
	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	o.layout = VB_RING_LAYOUT;
	h.ring = &o;
	if (ipc_chan_request(v->vmm, VB__DEV__TYPE__HELLO, &h.base, (int[]){memfd, v->efd}, 2,
			     &id) < 0)
		fuzz_fail("sending the HELLO with a ring offer");
	close(memfd);
	settle(loop, v, &ok);
	if (!ok)
		fuzz_fail("the worker did not take a proper ring offer");
}

static void ring_doorbell(struct ring_fuzz *v)
{
	uint64_t one = 1;

	(void)!write(v->efd, &one, sizeof(one));
}

static void run_records(uv_loop_t *loop, struct ring_fuzz *v, const uint8_t *p, size_t n)
{
	uint8_t *page = (uint8_t *)v->page;

	while (n >= 4) {
		uint8_t cmd = p[0], len = p[3];
		size_t off = (size_t)(p[1] | p[2] << 8) % VB_RING_SIZE;

		p += 4;
		n -= 4;
		if (len > n)
			len = (uint8_t)n;
		if ((cmd & 3) <= 1) {
			size_t k = len < VB_RING_SIZE - off ? len : VB_RING_SIZE - off;

			memcpy(page + off, p, k);
			p += len;
			n -= len;
		}
		if ((cmd & 3) == 1)
			atomic_store(&v->page->vmm.seq, atomic_load(&v->page->wkr.seq) + 1);
		if ((cmd & 3) == 1 || (cmd & 3) == 2)
			ring_doorbell(v);
		settle(loop, v, NULL);
	}
}

/* The session still answers over the socket, whatever the ring went through. */
static void check_socket(uv_loop_t *loop, struct ring_fuzz *v)
{
	Vb__Dev__CfgRead q = VB__DEV__CFG_READ__INIT;
	uint32_t id;
	int replies;

	q.size = 2;
	if (ipc_chan_request(v->vmm, VB__DEV__TYPE__CFG_READ, &q.base, NULL, 0, &id) < 0)
		fuzz_fail("sending a CFG_READ over the socket after the ring records");
	replies = settle(loop, v, NULL);
	if (replies != 1)
		fuzz_fail("a CFG_READ over the socket after the ring records got %d replies, not 1",
			  replies);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ring_fuzz v = {.efd = -1};
	struct fuzz_worker w;

	if (size < 1)
		return 0;
	fuzz_worker_start(&w, data[0] & 3, false);
	if (ipc_chan_new(w.client, &ipc_proto_device, NULL, &v.vmm) < 0)
		fuzz_fail("set-up: the VMM's channel");
	w.client = -1; /* the channel's now */
	offer_ring(&w.loop, &v);
	run_records(&w.loop, &v, data + 1, size - 1);
	check_socket(&w.loop, &v);
	/* The VMM goes away: the ring goes with its session. */
	ipc_chan_free(v.vmm);
	munmap(v.page, VB_RING_SIZE);
	close(v.efd);
	fuzz_worker_stop(&w);
	return 0;
}
