/*
 * ring: the worker's consumer of a VMM's shared-memory ring (see ring.h, ipc/ipc_ring.h).
 *
 * The page is hostile input, written by the VMM at any time, during an access as well as
 * between them. So: a request's fields are read out of the page exactly once, each with one
 * load, into private memory; only that copy is checked and dispatched, and nothing read from
 * the page afterwards changes what is done. The worker's own position (the sequence number it
 * answered last) lives in private memory too; the page's copy of it is only ever written. A
 * sequence number that is not one past the last answered gets an error answer at that number
 * (the VMM that scribbled it gets errors, the worker resynchronises). Every field is bounded
 * before use: the op against the four accesses, the size against the slot, a config offset
 * against 32 bits; the handlers then check everything the socket's requests are checked for.
 *
 * The worker never waits on the page: its wait is its event loop, where the doorbell is one
 * more fd. After an answer it may watch the page for the next request, but only while the VMM
 * runs on another CPU and for at most VB_RING_WORKER_SPIN_NS, and it serves at most
 * RING_TURN_MAX requests per turn of the loop, so a VMM that keeps posting gets the worker's
 * attention exactly as one that floods the socket does, and the broker channel and interrupts
 * keep their turns. What the VMM does to the flags costs only the VMM: a doorbell it does not
 * ring delays its own answers, a `sleeping` flag it clears makes its own wait time out.
 */
#include "ring.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "device.pb-c.h"
#include "ipc_ring.h"

/* Requests served per turn of the loop before the others get theirs. */
#define RING_TURN_MAX 32u

/* How long a turn watches the page for the next request (VB_RING_WORKER_SPIN_NS). fuzz_ring
 * builds this file with 0: its VMM is the thread that runs this loop, so no request can come
 * while the worker watches, and the 20 us after each answer were a third of its time, spent
 * or not depending on which CPU the fuzzer ran on. With 0 the watch still opens, reads the page
 * again and closes; only its second round (the window still open) is not run. */
#ifndef WKR_RING_SPIN_NS
#define WKR_RING_SPIN_NS VB_RING_WORKER_SPIN_NS
#endif

/* A request as read out of the page, once. */
struct ring_req {
	uint32_t op, index, size;
	uint64_t offset;
	uint8_t data[VB_RING_DATA_MAX];
};

struct wkr_ring {
	struct vb_ring_page *page; /* the VMM's: read once per request, never trusted */
	int doorbell;		   /* watched in epfd, edge-triggered; never read or written */
	int epfd;
	uv_poll_t poll;
	uv_timer_t again; /* another turn: the budget ran out, or a deferred answer came */
	int open_handles;
	bool closing;
	bool serving; /* inside serve(): an answer needs no new turn */

	uint32_t last;	 /* the sequence number answered last */
	uint32_t cur;	 /* the one being answered */
	bool pending;	 /* dispatched, not answered yet: read nothing more */
	int32_t vmm_cpu; /* where the VMM said it ran, read once per turn */
	uint64_t answered;

	wkr_ring_dispatch_fn dispatch;
	void *data;
	struct ipc_msg *msg; /* the request handed to dispatch; its body is one of these */
	Vb__Dev__CfgRead cfg_read;
	Vb__Dev__CfgWrite cfg_write;
	Vb__Dev__RegionRead region_read;
	Vb__Dev__RegionWrite region_write;
	uint8_t wdata[VB_RING_DATA_MAX];
};

static ProtobufCMessage *body_cfg_read(struct wkr_ring *r, const struct ring_req *q)
{
	vb__dev__cfg_read__init(&r->cfg_read);
	r->cfg_read.offset = (uint32_t)q->offset;
	r->cfg_read.size = q->size;
	return &r->cfg_read.base;
}

static ProtobufCMessage *body_cfg_write(struct wkr_ring *r, const struct ring_req *q)
{
	vb__dev__cfg_write__init(&r->cfg_write);
	memcpy(r->wdata, q->data, q->size);
	r->cfg_write.offset = (uint32_t)q->offset;
	r->cfg_write.data.data = r->wdata;
	r->cfg_write.data.len = q->size;
	return &r->cfg_write.base;
}

static ProtobufCMessage *body_region_read(struct wkr_ring *r, const struct ring_req *q)
{
	vb__dev__region_read__init(&r->region_read);
	r->region_read.index = q->index;
	r->region_read.offset = q->offset;
	r->region_read.size = q->size;
	return &r->region_read.base;
}

static ProtobufCMessage *body_region_write(struct wkr_ring *r, const struct ring_req *q)
{
	vb__dev__region_write__init(&r->region_write);
	memcpy(r->wdata, q->data, q->size);
	r->region_write.index = q->index;
	r->region_write.offset = q->offset;
	r->region_write.data.data = r->wdata;
	r->region_write.data.len = q->size;
	return &r->region_write.base;
}

/* What travels on the ring: the four accesses, each as the socket's request message. */
static const struct {
	uint32_t op;
	bool cfg; /* config space: the socket's offset field has 32 bits */
	ProtobufCMessage *(*body)(struct wkr_ring *r, const struct ring_req *q);
} ring_ops[] = {
    {VB__DEV__TYPE__CFG_READ, true, body_cfg_read},
    {VB__DEV__TYPE__CFG_WRITE, true, body_cfg_write},
    {VB__DEV__TYPE__REGION_READ, false, body_region_read},
    {VB__DEV__TYPE__REGION_WRITE, false, body_region_write},
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* One load per field, so the compiler can neither read a field twice nor read it later than
 * here; the data bytes through a volatile pointer for the same reason. */
static void read_req(const struct vb_ring_vmm *p, struct ring_req *q)
{
	const volatile uint8_t *d = p->data;

	q->op = __atomic_load_n(&p->op, __ATOMIC_RELAXED);
	q->index = __atomic_load_n(&p->index, __ATOMIC_RELAXED);
	q->size = __atomic_load_n(&p->size, __ATOMIC_RELAXED);
	q->offset = __atomic_load_n(&p->offset, __ATOMIC_RELAXED);
	for (size_t i = 0; i < VB_RING_DATA_MAX; i++)
		q->data[i] = d[i];
}

static void answer_now(struct wkr_ring *r, uint32_t seq, int status, const char *msg)
{
	r->cur = seq;
	r->pending = true;
	wkr_ring_answer(r, status, NULL, 0, msg);
}

/* Copies the request numbered `seq` and dispatches it, or answers what is wrong with its
 * format. Returns 0, -EAGAIN when the session cannot take it yet (wkr_ring_kick() brings the
 * ring back), or -ENOTCONN when the session ended under the dispatch. */
static int take(struct wkr_ring *r, uint32_t seq)
{
	struct ring_req q;
	size_t i;

	if (seq != r->last + 1) {
		answer_now(r, seq, -EPROTO, "ring request out of sequence");
		return 0;
	}
	read_req(&r->page->vmm, &q);
	for (i = 0; i < ARRAY_SIZE(ring_ops) && ring_ops[i].op != q.op; i++)
		;
	if (i == ARRAY_SIZE(ring_ops)) {
		answer_now(r, seq, -EOPNOTSUPP,
			   "the ring carries config and region accesses only: send anything else "
			   "over the socket");
		return 0;
	}
	if (q.size == 0 || q.size > VB_RING_DATA_MAX) {
		answer_now(r, seq, -EINVAL,
			   "ring access of a size outside 1 to 8 bytes: longer ones go over the "
			   "socket");
		return 0;
	}
	if (ring_ops[i].cfg && q.offset > UINT32_MAX) {
		answer_now(r, seq, -EINVAL, "config access beyond 32-bit offsets");
		return 0;
	}
	r->msg->type = (uint16_t)q.op;
	r->msg->body = ring_ops[i].body(r, &q);
	r->cur = seq;
	r->pending = true;
	if (!r->dispatch(r->data, r->msg)) {
		/* Not now: the request stays on the page, to be read again (once more) when
		 * kicked. */
		r->pending = false;
		return -EAGAIN;
	}
	return r->closing ? -ENOTCONN : 0;
}

/* Whether the VMM runs on another CPU: only then can watching the page see its next request
 * before the worker would have to sleep anyway. */
static bool apart(struct wkr_ring *r)
{
	int cpu = sched_getcpu();

	atomic_store_explicit(&r->page->wkr.cpu, cpu, memory_order_relaxed);
	return cpu >= 0 && cpu != r->vmm_cpu;
}

/* Tells the VMM the worker sleeps; false when a request came meanwhile (serve it first). */
static bool sleep_ok(struct wkr_ring *r)
{
	atomic_store(&r->page->wkr.sleeping, 1);
	if (atomic_load(&r->page->vmm.seq) == r->last)
		return true;
	atomic_store(&r->page->wkr.sleeping, 0);
	return false;
}

static void on_again(uv_timer_t *t);

/* One turn: serves what the page holds, watches for more within the spin window, sleeps. */
static void serve(struct wkr_ring *r)
{
	uint64_t spin_end = 0;
	unsigned n = 0;
	bool spin = false, held = false;

	r->serving = true;
	atomic_store(&r->page->wkr.sleeping, 0);
	r->vmm_cpu = atomic_load_explicit(&r->page->vmm.cpu, memory_order_relaxed);
	while (!r->pending && !r->closing) {
		uint32_t seq = atomic_load_explicit(&r->page->vmm.seq, memory_order_acquire);

		if (seq != r->last) {
			if (n++ == RING_TURN_MAX)
				break;
			held = take(r, seq) == -EAGAIN;
			if (held || r->closing)
				break;
			spin = apart(r);
			spin_end = 0;
			continue;
		}
		if (!spin)
			break;
		if (!spin_end)
			spin_end = now_ns() + WKR_RING_SPIN_NS;
		else if (now_ns() >= spin_end)
			break;
		for (int i = 0; i < 32; i++)
			vb_ring_relax();
	}
	r->serving = false;
	if (r->pending || r->closing)
		return; /* a deferred answer starts the next turn */
	if (held) {
		/* Awake for the VMM (it needs no doorbell): the kick brings the next turn. */
		return;
	}
	if (n > RING_TURN_MAX || !sleep_ok(r))
		uv_timer_start(&r->again, on_again, 0, 0);
}

void wkr_ring_kick(struct wkr_ring *r)
{
	if (r && !r->closing && !r->pending)
		uv_timer_start(&r->again, on_again, 0, 0);
}

static void on_again(uv_timer_t *t)
{
	serve(t->data);
}

static void on_doorbell(uv_poll_t *h, int status, int events)
{
	struct wkr_ring *r = h->data;
	struct epoll_event ev;

	/* Takes the edge off the set, so that it polls readable again only at the next ring. */
	(void)epoll_wait(r->epfd, &ev, 1, 0);
	serve(r);
}

void wkr_ring_answer(struct wkr_ring *r, int status, const void *data, size_t len, const char *msg)
{
	struct vb_ring_wkr *w = &r->page->wkr;
	size_t n = 0;

	if (!r->pending)
		return;
	if (status == 0 && len > VB_RING_DATA_MAX) {
		status = -EMSGSIZE;
		msg = "the answer does not fit the ring's slot";
	}
	if (status < 0)
		len = 0;
	if (len)
		memcpy(w->data, data, len);
	if (msg) {
		n = strnlen(msg, VB_RING_MSG_MAX - 1);
		memcpy(r->page->msg, msg, n);
	}
	r->page->msg[n] = '\0';
	w->status = status;
	w->size = (uint32_t)len;
	w->msg_len = (uint32_t)n;
	r->pending = false;
	r->last = r->cur;
	r->answered++;
	atomic_store(&w->seq, r->cur);
	/* FUTEX_WAKE never blocks, whatever the VMM did to the page: at worst it wakes no one. */
	if (atomic_load(&r->page->vmm.sleeping))
		(void)syscall(SYS_futex, (uint32_t *)&w->seq, FUTEX_WAKE, 1, NULL, NULL, 0);
	if (!r->serving && !r->closing)
		uv_timer_start(&r->again, on_again, 0, 0);
}

bool wkr_ring_owns(const struct wkr_ring *r, const struct ipc_msg *m)
{
	return r && m == r->msg;
}

uint64_t wkr_ring_requests(const struct wkr_ring *r)
{
	return r ? r->answered : 0;
}

/* Whatever the doorbell is, the worker only ever sees its edges: an eventfd is what works, and
 * anything else (a file, a socket) is refused before it is watched. Anonymous inodes (eventfd)
 * have no file type bits; no /proc is needed to tell. */
static int doorbell_check(int fd, struct vb_err *err)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return vb_errf(err, -EBADF, "the ring's doorbell is not an open fd");
	if ((st.st_mode & S_IFMT) != 0)
		return vb_errf(err, -EACCES, "the ring's doorbell must be an eventfd");
	return 0;
}

static int ring_map(struct wkr_ring *r, int memfd, struct vb_err *err)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
	void *p;
	int e = ipc_ring_memfd_check(memfd, err);

	if (e == 0)
		e = doorbell_check(r->doorbell, err);
	if (e < 0)
		return e;
	p = mmap(NULL, VB_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED)
		return vb_errf(err, -errno, "mapping the ring: %m");
	r->page = p;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0)
		return vb_errf(err, -errno, "the ring's epoll set: %m");
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->doorbell, &ev) < 0)
		return vb_errf(err, -errno, "watching the ring's doorbell: %m");
	return 0;
}

static void ring_release(struct wkr_ring *r)
{
	if (r->page)
		munmap(r->page, VB_RING_SIZE);
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->doorbell >= 0)
		close(r->doorbell);
	free(r->msg);
	free(r);
}

static void handle_closed(uv_handle_t *h)
{
	struct wkr_ring *r = h->data;

	if (--r->open_handles == 0)
		ring_release(r);
}

int wkr_ring_new(uv_loop_t *loop, int memfd, int doorbell, wkr_ring_dispatch_fn dispatch,
		 void *data, struct wkr_ring **ret, struct vb_err *err)
{
	_cleanup_close_ int mfd = memfd;
	struct wkr_ring *r = calloc(1, sizeof(*r));
	int e;

	if (!r) {
		if (doorbell >= 0)
			close(doorbell);
		return vb_errf(err, -ENOMEM, "no memory for a ring");
	}
	r->doorbell = doorbell;
	r->epfd = -1;
	r->dispatch = dispatch;
	r->data = data;
	r->msg = calloc(1, sizeof(*r->msg));
	e = r->msg ? ring_map(r, mfd, err) : vb_errf(err, -ENOMEM, "no memory for a ring");
	if (e == 0)
		e = uv_poll_init(loop, &r->poll, r->epfd);
	if (e < 0) {
		if (!err || !err->code)
			vb_errf(err, e, "watching the ring: %s", uv_strerror(e));
		ring_release(r);
		return e;
	}
	r->msg->kind = IPC_KIND_REQUEST;
	r->poll.data = r;
	uv_timer_init(loop, &r->again);
	r->again.data = r;
	r->open_handles = 2;
	/* The page starts as the VMM made it; the worker's line says where it stands. */
	atomic_store(&r->page->wkr.seq, 0);
	atomic_store(&r->page->wkr.sleeping, 1);
	e = uv_poll_start(&r->poll, UV_READABLE, on_doorbell);
	if (e < 0) {
		vb_errf(err, e, "watching the ring: %s", uv_strerror(e));
		wkr_ring_free(r);
		return e;
	}
	*ret = r;
	return 0;
}

void wkr_ring_free(struct wkr_ring *r)
{
	if (!r || r->closing)
		return;
	r->closing = true;
	uv_close((uv_handle_t *)&r->poll, handle_closed);
	uv_close((uv_handle_t *)&r->again, handle_closed);
}
