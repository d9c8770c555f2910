/*
 * test_ring: the shared-memory ring for trapped accesses (ipc/ipc_ring.h), end to end on the
 * host: libvfiobroker against the real vfio-worker in standalone mode (its seccomp filter on, as
 * in production) serving tests/fixtures/edu.img, and a hand-made VMM that writes the page itself
 * for what libvfiobroker would never send (bad offers, a scribbled page).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "base.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "ipc_ring.h"
#include "test_client_fake.h"
#include "test_wait.h"
#include "vfiobroker/client.h"
#include "test_memfd.h"

/* ---- the real worker, standalone ------------------------------------------------------------ */

/* Workers of the running test, ended by the teardown even when an assertion failed. */
static struct standalone_worker workers[2];

static void wk_start(struct standalone_worker *w, bool no_ring)
{
	standalone_worker_start(w, VB_WORKER_PATH, VB_FIXTURES "/edu.img",
				no_ring ? "--no-ring" : NULL);
}

/* Whether the worker is still running (it neither crashed nor exited). */
static bool wk_alive(struct standalone_worker *w)
{
	return waitpid(w->pid, NULL, WNOHANG) == 0;
}

static int teardown(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(workers); i++)
		standalone_worker_stop(&workers[i]);
	return 0;
}

static struct vfb_dev *wk_connect(struct standalone_worker *w, uint32_t flags)
{
	struct vfb_dev *dev = NULL;

	assert_int_equal(vfb_dev_connect(w->sock, "test_ring", flags, &dev), 0);
	return dev;
}

/* ---- negotiation through libvfiobroker ---------------------------------------------------- */

static void test_ring_default_connect_negotiated(void **state)
{
	struct vfb_dev *dev;
	uint8_t id[4];

	wk_start(&workers[0], false);
	dev = wk_connect(&workers[0], 0);
	assert_true(vfb_dev_ring_active(dev));
	assert_string_equal(vfb_dev_ring_reason(dev), "");
	assert_int_equal(vfb_dev_cfg_read(dev, 0, id, 4), 0);
	assert_int_equal(id[0] | id[1] << 8, 0x1234);
	assert_int_equal(id[2] | id[3] << 8, 0x11e8);
	vfb_dev_close(dev);
}

static void test_ring_client_option_off_not_offered(void **state)
{
	struct vfb_dev *dev;
	uint8_t id[2];

	wk_start(&workers[0], false);
	dev = wk_connect(&workers[0], VFB_DEV_CONNECT_NO_RING);
	assert_false(vfb_dev_ring_active(dev));
	assert_non_null(strstr(vfb_dev_ring_reason(dev), "VFB_DEV_CONNECT_NO_RING"));
	assert_int_equal(vfb_dev_cfg_read(dev, 0, id, 2), 0);
	assert_int_equal(id[0] | id[1] << 8, 0x1234);
	vfb_dev_close(dev);
}

static void test_ring_worker_option_off_declined_socket_serves(void **state)
{
	struct vfb_dev *dev;
	uint8_t id[2];

	wk_start(&workers[0], true);
	dev = wk_connect(&workers[0], 0);
	assert_false(vfb_dev_ring_active(dev));
	assert_non_null(strstr(vfb_dev_ring_reason(dev), "--no-ring"));
	assert_int_equal(vfb_dev_cfg_read(dev, 0, id, 2), 0);
	assert_int_equal(id[0] | id[1] << 8, 0x1234);
	vfb_dev_close(dev);
}

/* ---- the same answers through both transports ---------------------------------------------- */

struct answer {
	int r;
	uint8_t data[8];
	char msg[256];
};

/* One access of the script: what it asks and the answer, filled by run_script. */
struct step {
	bool cfg, write;
	uint32_t index;
	uint64_t offset;
	size_t len;
	uint8_t data[8];
};

static void run_script(struct vfb_dev *dev, const struct step *s, size_t n, struct answer *out)
{
	for (size_t i = 0; i < n; i++) {
		struct answer *a = &out[i];
		uint8_t buf[8];

		memcpy(buf, s[i].data, sizeof(buf));
		memset(a, 0, sizeof(*a));
		if (s[i].cfg && s[i].write)
			a->r = vfb_dev_cfg_write(dev, (uint32_t)s[i].offset, buf, s[i].len);
		else if (s[i].cfg)
			a->r = vfb_dev_cfg_read(dev, (uint32_t)s[i].offset, buf, s[i].len);
		else if (s[i].write)
			a->r = vfb_dev_region_write(dev, s[i].index, s[i].offset, buf, s[i].len);
		else
			a->r = vfb_dev_region_read(dev, s[i].index, s[i].offset, buf, s[i].len);
		if (!s[i].write && a->r == 0)
			memcpy(a->data, buf, s[i].len);
		snprintf(a->msg, sizeof(a->msg), "%s", vfb_dev_last_error(dev));
	}
}

/* Every kind of access, of every size the ring carries, good and bad, in both transports
 * against two workers of the same image: the same return code, data and error message. */
static void test_ring_every_access_same_answer_as_socket(void **state)
{
	static struct step script[160];
	static struct answer via_ring[160], via_sock[160];
	static const size_t sizes[] = {1, 2, 4, 8};
	struct vfb_dev *ring_dev, *sock_dev;
	size_t n = 0;

	/* Config space: every header dword read, then writes that change state (Command, BAR0,
	 * the MSI capability's control and address) and reads of what they changed. */
	for (uint32_t off = 0; off < 0x100; off += 4)
		script[n++] = (struct step){.cfg = true, .offset = off, .len = 4};
	script[n++] = (struct step){.cfg = true,
				    .write = true,
				    .offset = PCI_COMMAND,
				    .len = 2,
				    .data = {PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER}};
	script[n++] = (struct step){.cfg = true,
				    .write = true,
				    .offset = PCI_BASE_ADDRESS_0,
				    .len = 4,
				    .data = {0x00, 0x00, 0xa0, 0xfe}};
	script[n++] = (struct step){
	    .cfg = true, .write = true, .offset = 0x44, .len = 4, .data = {0x00, 0x00, 0xe0, 0xfe}};
	script[n++] = (struct step){.cfg = true, .offset = PCI_BASE_ADDRESS_0, .len = 4};
	script[n++] = (struct step){.cfg = true, .offset = 0x40, .len = 8};
	script[n++] = (struct step){.cfg = true, .offset = 1, .len = 1};
	script[n++] = (struct step){.cfg = true, .offset = 2, .len = 2};
	script[n++] = (struct step){.cfg = true, .offset = 4095, .len = 1};
	/* BAR0 (edu's registers, inert here): writes of each size and their read-back. */
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		script[n++] =
		    (struct step){.index = 0,
				  .write = true,
				  .offset = 0x80 + 8 * i,
				  .len = sizes[i],
				  .data = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}};
		script[n++] = (struct step){.index = 0, .offset = 0x80 + 8 * i, .len = sizes[i]};
	}
	/* Refusals, each with the worker's message: beyond the region, a region that does not
	 * exist, the ROM (read-only here), the last bytes of the BAR across its end. */
	script[n++] = (struct step){.index = 0, .offset = 0x100000, .len = 4};
	script[n++] = (struct step){.index = 0, .offset = 0xffffc, .len = 8};
	script[n++] = (struct step){.index = 9, .offset = 0, .len = 4};
	script[n++] = (struct step){.index = 200, .offset = 0, .len = 2};
	script[n++] = (struct step){.index = 1, .offset = 0, .len = 4};
	script[n++] = (struct step){.index = 0, .write = true, .offset = UINT64_MAX - 3, .len = 4};
	assert_true(n <= ARRAY_SIZE(script));

	wk_start(&workers[0], false);
	wk_start(&workers[1], false);
	ring_dev = wk_connect(&workers[0], 0);
	sock_dev = wk_connect(&workers[1], VFB_DEV_CONNECT_NO_RING);
	assert_true(vfb_dev_ring_active(ring_dev));
	assert_false(vfb_dev_ring_active(sock_dev));
	run_script(ring_dev, script, n, via_ring);
	run_script(sock_dev, script, n, via_sock);
	for (size_t i = 0; i < n; i++) {
		if (via_ring[i].r != via_sock[i].r || strcmp(via_ring[i].msg, via_sock[i].msg) ||
		    memcmp(via_ring[i].data, via_sock[i].data, 8))
			fail_msg(
			    "step %zu (%s %s at %#llx, %zu bytes): ring %d '%s', socket %d '%s'", i,
			    script[i].cfg ? "config" : "region", script[i].write ? "write" : "read",
			    (unsigned long long)script[i].offset, script[i].len, via_ring[i].r,
			    via_ring[i].msg, via_sock[i].r, via_sock[i].msg);
	}
	/* The script has refusals, and they came with the worker's reasons. */
	assert_true(via_ring[n - 1].r < 0 && via_ring[n - 1].msg[0]);
	/* Still through the ring after the errors: refusals do not drop it. */
	assert_true(vfb_dev_ring_active(ring_dev));
	vfb_dev_close(ring_dev);
	vfb_dev_close(sock_dev);
}

/* ---- a VMM that writes the page itself ------------------------------------------------------ */

struct raw {
	struct ipc_chan *c;
	struct vb_ring_page *page;
	int memfd, efd;
	uint32_t seq;
	bool accepted;
	uint32_t error;
	char reason[256];
};

#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Connects and says HELLO with a ring offer of `fds` (nfds of them) and `layout`. */
static void raw_hello(struct standalone_worker *w, struct raw *r, const int *fds, size_t nfds,
		      uint32_t layout)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	Vb__Dev__RingOffer o = VB__DEV__RING_OFFER__INIT;
	const Vb__Dev__HelloReply *rep;
	struct ipc_msg *m;
	int fd;

	assert_int_equal(ipc_connect(w->sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_device, NULL, &r->c), 0);
	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	h.client = "test_ring raw";
	o.layout = layout;
	h.ring = &o;
	assert_int_equal(
	    ipc_chan_call(r->c, VB__DEV__TYPE__HELLO, &h.base, fds, nfds, TEST_HANG_MS, &m, NULL),
	    0);
	rep = (const Vb__Dev__HelloReply *)m->body;
	assert_non_null(rep->ring);
	r->accepted = rep->ring->accepted;
	r->error = rep->ring->error;
	snprintf(r->reason, sizeof(r->reason), "%s", rep->ring->reason);
	ipc_msg_free(m);
}

/* A config read over the socket: the session serves, whatever happened to the ring. */
static void raw_socket_read_vendor(struct raw *r)
{
	Vb__Dev__CfgRead q = VB__DEV__CFG_READ__INIT;
	const Vb__Dev__Data *d;
	struct ipc_msg *m;

	q.offset = 0;
	q.size = 2;
	assert_int_equal(
	    ipc_chan_call(r->c, VB__DEV__TYPE__CFG_READ, &q.base, NULL, 0, TEST_HANG_MS, &m, NULL),
	    0);
	d = (const Vb__Dev__Data *)m->body;
	assert_int_equal(d->data.len, 2);
	assert_int_equal(d->data.data[0] | d->data.data[1] << 8, 0x1234);
	ipc_msg_free(m);
}

static void raw_close(struct raw *r)
{
	ipc_chan_free(r->c);
	if (r->page)
		munmap(r->page, VB_RING_SIZE);
	if (r->efd >= 0)
		close(r->efd);
	if (r->memfd >= 0)
		close(r->memfd);
}

/* An offer that is wrong in one way: refused with `err` and a reason naming `word`; the HELLO
 * succeeded all the same and the socket serves. */
static void expect_refused(struct standalone_worker *w, const int *fds, size_t nfds,
			   uint32_t layout, int err, const char *word)
{
	struct raw r = {.memfd = -1, .efd = -1};

	raw_hello(w, &r, fds, nfds, layout);
	assert_false(r.accepted);
	assert_int_equal(r.error, err);
	if (!strstr(r.reason, word))
		fail_msg("reason '%s' does not say '%s'", r.reason, word);
	raw_socket_read_vendor(&r);
	raw_close(&r);
}

static void test_ring_bad_offers_refused_clearly_socket_serves(void **state)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), pfd[2];
	int good = test_memfd(VB_RING_SIZE, ALL_SEALS);
	int unsealed = test_memfd(VB_RING_SIZE, 0);
	int no_grow = test_memfd(VB_RING_SIZE, F_SEAL_SHRINK | F_SEAL_SEAL);
	int big = test_memfd(2 * VB_RING_SIZE, ALL_SEALS);
	int small = test_memfd(64, ALL_SEALS);
	int wsealed = test_memfd(VB_RING_SIZE, ALL_SEALS | F_SEAL_WRITE);
	char path[] = "/tmp/vfb-ring-file-XXXXXX";
	int file = mkstemp(path);

	assert_true(efd >= 0 && file >= 0);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(ftruncate(file, VB_RING_SIZE), 0);
	unlink(path);
	wk_start(&workers[0], false);
	expect_refused(&workers[0], (int[]){unsealed, efd}, 2, VB_RING_LAYOUT, EPERM, "sealed");
	expect_refused(&workers[0], (int[]){no_grow, efd}, 2, VB_RING_LAYOUT, EPERM, "F_SEAL_GROW");
	expect_refused(&workers[0], (int[]){big, efd}, 2, VB_RING_LAYOUT, EINVAL, "bytes");
	expect_refused(&workers[0], (int[]){small, efd}, 2, VB_RING_LAYOUT, EINVAL, "bytes");
	expect_refused(&workers[0], (int[]){wsealed, efd}, 2, VB_RING_LAYOUT, EACCES, "writing");
	expect_refused(&workers[0], (int[]){file, efd}, 2, VB_RING_LAYOUT, EACCES, "memfd");
	expect_refused(&workers[0], (int[]){pfd[0], efd}, 2, VB_RING_LAYOUT, EACCES, "memfd");
	expect_refused(&workers[0], (int[]){good, pfd[0]}, 2, VB_RING_LAYOUT, EACCES, "eventfd");
	expect_refused(&workers[0], (int[]){good}, 1, VB_RING_LAYOUT, EINVAL, "2 fds");
	expect_refused(&workers[0], NULL, 0, VB_RING_LAYOUT, EINVAL, "2 fds");
	expect_refused(&workers[0], (int[]){good, efd}, 2, VB_RING_LAYOUT + 1, EPROTONOSUPPORT,
		       "layout");
	assert_true(wk_alive(&workers[0]));
	close(efd);
	close(pfd[0]);
	close(pfd[1]);
	close(good);
	close(unsealed);
	close(no_grow);
	close(big);
	close(small);
	close(wsealed);
	close(file);
}

/* A raw VMM with an accepted ring. */
static void raw_ring(struct standalone_worker *w, struct raw *r)
{
	void *p;

	r->memfd = test_memfd(VB_RING_SIZE, ALL_SEALS);
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(r->efd >= 0);
	p = mmap(NULL, VB_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	assert_true(p != MAP_FAILED);
	r->page = p;
	raw_hello(w, r, (int[]){r->memfd, r->efd}, 2, VB_RING_LAYOUT);
	assert_true(r->accepted);
}

/* Waits until the worker's line says `want` was answered (bounded by TEST_HANG_MS). */
static void raw_wait(struct raw *r, uint32_t want)
{
	_Atomic uint32_t *seq = &r->page->wkr.seq;
	int64_t deadline = test_now_ms() + TEST_HANG_MS;

	atomic_store(&r->page->vmm.sleeping, 1);
	for (;;) {
		uint32_t cur = atomic_load(seq);
		struct timespec ts = {.tv_nsec = 50 * 1000000};

		if (cur == want)
			break;
		if (test_now_ms() >= deadline)
			fail_msg("the worker never answered request %u (last %u)", want, cur);
		syscall(SYS_futex, (uint32_t *)seq, FUTEX_WAIT, cur, &ts, NULL, 0);
	}
	atomic_store(&r->page->vmm.sleeping, 0);
}

/* Posts request `seq` as given and rings the doorbell; returns the worker's status. */
static int raw_post(struct raw *r, uint32_t seq, uint32_t op, uint32_t index, uint64_t offset,
		    uint32_t size, const void *data)
{
	uint64_t one = 1;

	r->page->vmm.op = op;
	r->page->vmm.index = index;
	r->page->vmm.offset = offset;
	r->page->vmm.size = size;
	if (data)
		memcpy(r->page->vmm.data, data, size <= 8 ? size : 8);
	atomic_store(&r->page->vmm.seq, seq);
	assert_int_equal(write(r->efd, &one, sizeof(one)), sizeof(one));
	raw_wait(r, seq);
	r->seq = seq;
	return r->page->wkr.status;
}

static void test_ring_malformed_slots_answered_with_errors(void **state)
{
	struct raw r = {.memfd = -1, .efd = -1};
	uint32_t v = 0;

	wk_start(&workers[0], false);
	raw_ring(&workers[0], &r);
	/* A good read first: the answer and its length. */
	assert_int_equal(raw_post(&r, 1, VB__DEV__TYPE__CFG_READ, 0, 0, 4, NULL), 0);
	assert_int_equal(r.page->wkr.size, 4);
	memcpy(&v, r.page->wkr.data, 4);
	assert_int_equal(v, 0x11e81234);
	/* What the ring does not carry, sizes it cannot hold, offsets config space cannot have. */
	assert_int_equal(raw_post(&r, 2, VB__DEV__TYPE__HELLO, 0, 0, 4, NULL), -EOPNOTSUPP);
	assert_int_equal(raw_post(&r, 3, VB__DEV__TYPE__DMA_MAP, 0, 0, 4, NULL), -EOPNOTSUPP);
	assert_int_equal(raw_post(&r, 4, 0xffffffffu, 0, 0, 4, NULL), -EOPNOTSUPP);
	assert_int_equal(raw_post(&r, 5, VB__DEV__TYPE__CFG_READ, 0, 0, 0, NULL), -EINVAL);
	assert_int_equal(raw_post(&r, 6, VB__DEV__TYPE__CFG_READ, 0, 0, 9, NULL), -EINVAL);
	assert_int_equal(raw_post(&r, 7, VB__DEV__TYPE__REGION_READ, 0, 0, 0xffffffffu, NULL),
			 -EINVAL);
	assert_int_equal(raw_post(&r, 8, VB__DEV__TYPE__CFG_READ, 0, 1ull << 32, 4, NULL), -EINVAL);
	/* The handlers' own checks, with their messages, as over the socket. */
	assert_int_equal(raw_post(&r, 9, VB__DEV__TYPE__CFG_READ, 0, 4096, 4, NULL), -EINVAL);
	assert_non_null(strstr(r.page->msg, "config read"));
	assert_int_equal(raw_post(&r, 10, VB__DEV__TYPE__REGION_READ, 77, 0, 4, NULL), -EINVAL);
	assert_true(r.page->wkr.msg_len > 0 && r.page->wkr.msg_len < VB_RING_MSG_MAX);
	/* A sequence number that skips is answered with an error at that number, and the ring
	 * goes on from there. */
	assert_int_equal(raw_post(&r, 1000, VB__DEV__TYPE__CFG_READ, 0, 0, 4, NULL), -EPROTO);
	assert_int_equal(raw_post(&r, 1001, VB__DEV__TYPE__CFG_READ, 0, 0, 2, NULL), 0);
	assert_int_equal(r.page->wkr.size, 2);
	raw_socket_read_vendor(&r);
	assert_true(wk_alive(&workers[0]));
	raw_close(&r);
}

/* ---- a VMM that scribbles over the whole page ---------------------------------------------- */

struct scribbler {
	struct raw *r;
	int efd;
	_Atomic bool stop;
	_Atomic uint64_t rounds;
};

/* Random bytes over all of the page (the worker's line and the message too), ringing the
 * doorbell now and then, until told to stop: between accesses and during them. */
static void *scribble(void *arg)
{
	struct scribbler *s = arg;
	uint8_t *p = (uint8_t *)s->r->page;
	uint64_t x = 0x9e3779b97f4a7c15ull, one = 1;

	while (!atomic_load(&s->stop)) {
		for (size_t i = 0; i < VB_RING_SIZE; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(p + i, &x, 8);
		}
		/* Now and then a request that is exactly next, so the worker dispatches while
		 * the page keeps changing under it. */
		if ((x & 3) == 0) {
			uint32_t next = atomic_load(&s->r->page->wkr.seq) + 1;

			s->r->page->vmm.op = VB__DEV__TYPE__CFG_READ + (uint32_t)(x >> 8) % 4;
			s->r->page->vmm.size = 1 + (uint32_t)(x >> 16) % 8;
			atomic_store(&s->r->page->vmm.seq, next);
		}
		(void)!write(s->efd, &one, sizeof(one));
		atomic_fetch_add(&s->rounds, 1);
	}
	return NULL;
}

static void test_ring_scribbled_page_worker_serves_on(void **state)
{
	struct raw r = {.memfd = -1, .efd = -1};
	struct scribbler s = {.r = &r};
	pthread_t t;
	uint32_t last, v = 0;
	int64_t deadline;

	wk_start(&workers[0], false);
	raw_ring(&workers[0], &r);
	s.efd = r.efd;
	assert_int_equal(pthread_create(&t, NULL, scribble, &s), 0);
	/* The scribbler is under way before the socket is used (on a busy machine the thread may
	 * not have run yet when 200 reads are done): waits for its first rounds, not for a time. */
	deadline = test_now_ms() + TEST_HANG_MS;
	while (atomic_load(&s.rounds) < 2 && test_left_ms(deadline) > 0)
		sched_yield();
	assert_true(atomic_load(&s.rounds) >= 2);
	/* While the page is rewritten without pause, the worker's loop still serves its socket:
	 * it is neither crashed nor stuck on the page. */
	for (int i = 0; i < 200; i++)
		raw_socket_read_vendor(&r);
	atomic_store(&s.stop, true);
	pthread_join(t, NULL);
	assert_true(wk_alive(&workers[0]));
	/* Afterwards the ring answers a proper request again: whatever number the worker saw
	 * last, the next one after it. The scribbler also wrote the worker's line, so the number
	 * is resynchronised by one request first (answered, with an error or not). */
	memset(r.page, 0, sizeof(*r.page));
	last = 0x7fff0000u;
	(void)raw_post(&r, last, VB__DEV__TYPE__CFG_READ, 0, 0, 4, NULL);
	assert_int_equal(raw_post(&r, last + 1, VB__DEV__TYPE__CFG_READ, 0, 0, 4, NULL), 0);
	memcpy(&v, r.page->wkr.data, 4);
	assert_int_equal(v, 0x11e81234);
	raw_close(&r);
}

/* ---- libvfiobroker when the ring fails ---------------------------------------------------- */

/* A worker that takes the ring but never answers on it: the access times out, the handle drops
 * the ring and the next access goes over the socket. */
static void test_ring_unanswered_access_times_out_socket_takes_over(void **state)
{
	struct fake f = {.accept_ring = true};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t b[2];

	assert_true(vfb_dev_ring_active(dev));
	assert_int_equal(vfb_dev_set_timeout(dev, 200), 0);
	assert_int_equal(vfb_dev_cfg_read(dev, 0, b, 2), -ETIMEDOUT);
	assert_false(vfb_dev_ring_active(dev));
	assert_non_null(strstr(vfb_dev_ring_reason(dev), "dropped"));
	assert_int_equal(vfb_dev_set_timeout(dev, TEST_HANG_MS), 0);
	assert_int_equal(vfb_dev_cfg_read(dev, 0, b, 2), 0);
	assert_int_equal(b[0] | b[1] << 8, f.cfg[0] | f.cfg[1] << 8);
	vfb_dev_close(dev);
	fake_join(&f);
}

/* A worker older than rings refuses a HELLO with fds: the handle says hello again without. */
static void test_ring_older_worker_hello_retried_without(void **state)
{
	struct fake f = {.no_hello_fds = true};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t b[2];

	assert_false(vfb_dev_ring_active(dev));
	assert_non_null(strstr(vfb_dev_ring_reason(dev), "older worker"));
	assert_int_equal(vfb_dev_cfg_read(dev, 0, b, 2), 0);
	vfb_dev_close(dev);
	fake_join(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_ring_default_connect_negotiated, teardown),
	    cmocka_unit_test_teardown(test_ring_client_option_off_not_offered, teardown),
	    cmocka_unit_test_teardown(test_ring_worker_option_off_declined_socket_serves, teardown),
	    cmocka_unit_test_teardown(test_ring_every_access_same_answer_as_socket, teardown),
	    cmocka_unit_test_teardown(test_ring_bad_offers_refused_clearly_socket_serves, teardown),
	    cmocka_unit_test_teardown(test_ring_malformed_slots_answered_with_errors, teardown),
	    cmocka_unit_test_teardown(test_ring_scribbled_page_worker_serves_on, teardown),
	    cmocka_unit_test(test_ring_unanswered_access_times_out_socket_takes_over),
	    cmocka_unit_test(test_ring_older_worker_hello_retried_without),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
