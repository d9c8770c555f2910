/*
 * ring: the VMM's side of the shared-memory ring (see ring.h and ipc/ipc_ring.h).
 *
 * Trusts the worker for nothing it can check: an answer's status must be 0 or an errno, a read's
 * answer exactly the length asked, its message is bounded and terminated here. The page is the
 * handle's own, used by one thread at a time as the handle is.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "device.pb-c.h"
#include "ipc_ring.h"
#include "ring.h"

/* The longest sleep between looks at the socket: how late a dead worker is noticed. */
#define RING_SLICE_MS 50

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int vfb__ring_make(struct vfb__ring *r, int *ret_memfd)
{
	_cleanup_close_ int memfd =
	    memfd_create("vfio-broker-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	_cleanup_close_ int efd = -1;
	void *p;

	if (memfd < 0)
		return -errno;
	if (ftruncate(memfd, VB_RING_SIZE) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -errno;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return -errno;
	p = mmap(NULL, VB_RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED)
		return -errno;
	r->page = p;
	r->doorbell = TAKE_FD(efd);
	r->seq = 0;
	*ret_memfd = TAKE_FD(memfd);
	return 0;
}

void vfb__ring_fini(struct vfb__ring *r)
{
	/* The doorbell exists exactly when the page does (a zeroed ring has neither). */
	if (!r->page)
		return;
	munmap(r->page, VB_RING_SIZE);
	close(r->doorbell);
	r->page = NULL;
	r->doorbell = -1;
}

/* Whether the worker hung up its socket (it died, or ended the session). */
static bool hung_up(int sock)
{
	struct pollfd p = {.fd = sock, .events = POLLRDHUP};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

/* Spins for `spin_ns`, then sleeps in FUTEX_WAIT on the worker's sequence number until it is
 * `want`, the deadline passes (-ETIMEDOUT) or the worker hangs up (-EPIPE). */
static int wait_answer(struct vfb__ring *r, uint32_t want, uint64_t spin_ns, int timeout_ms,
		       int sock)
{
	_Atomic uint32_t *seq = &r->page->wkr.seq;
	uint64_t start = now_ns(), deadline = start + (uint64_t)timeout_ms * 1000000u;
	int e = 0;

	while (spin_ns && now_ns() - start < spin_ns) {
		for (int i = 0; i < 32; i++) {
			if (atomic_load_explicit(seq, memory_order_acquire) == want)
				return 0;
			vb_ring_relax();
		}
	}
	atomic_store(&r->page->vmm.sleeping, 1);
	for (;;) {
		uint32_t cur = atomic_load(seq);
		uint64_t t = now_ns(), slice = RING_SLICE_MS * 1000000ull;
		struct timespec ts;

		if (cur == want)
			break;
		if (timeout_ms >= 0 && t >= deadline) {
			e = -ETIMEDOUT;
			break;
		}
		if (hung_up(sock)) {
			e = -EPIPE;
			break;
		}
		if (timeout_ms >= 0 && deadline - t < slice)
			slice = deadline - t;
		ts.tv_sec = (time_t)(slice / 1000000000u);
		ts.tv_nsec = (long)(slice % 1000000000u);
		/* EAGAIN (it changed already), EINTR and ETIMEDOUT all mean: look again. */
		(void)syscall(SYS_futex, (uint32_t *)seq, FUTEX_WAIT, cur, &ts, NULL, 0);
	}
	atomic_store(&r->page->vmm.sleeping, 0);
	return e;
}

/* Reads the answer once it is there; the worker is checked as the socket's answers are, and an
 * answer that is not one is -EPROTO with *broken set. */
static int take_answer(struct vfb__ring *r, uint32_t op, void *buf, size_t len, char *msg,
		       size_t msglen, bool *broken)
{
	const struct vb_ring_wkr *w = &r->page->wkr;
	int32_t status = __atomic_load_n(&w->status, __ATOMIC_RELAXED);
	uint32_t size = __atomic_load_n(&w->size, __ATOMIC_RELAXED);
	uint32_t n = __atomic_load_n(&w->msg_len, __ATOMIC_RELAXED);
	bool read = op == VB__DEV__TYPE__CFG_READ || op == VB__DEV__TYPE__REGION_READ;

	*broken = status < -4095 || status > 0 || (read && status == 0 && size != len);
	if (*broken)
		return -EPROTO;
	if (status < 0) {
		n = n < msglen ? n : (uint32_t)msglen - 1;
		n = n < VB_RING_MSG_MAX ? n : VB_RING_MSG_MAX - 1;
		memcpy(msg, r->page->msg, n);
		msg[n] = '\0';
		return status;
	}
	if (read)
		memcpy(buf, w->data, len);
	return 0;
}

int vfb__ring_call(struct vfb__ring *r, uint32_t op, uint32_t index, uint64_t offset, void *buf,
		   size_t len, int timeout_ms, int sock, char *msg, size_t msglen, bool *broken)
{
	struct vb_ring_vmm *q = &r->page->vmm;
	int cpu = sched_getcpu();
	uint64_t one = 1, spin = 0;
	uint32_t seq = r->seq + 1;
	int e;

	q->op = op;
	q->index = index;
	q->size = (uint32_t)len;
	q->offset = offset;
	if (op == VB__DEV__TYPE__CFG_WRITE || op == VB__DEV__TYPE__REGION_WRITE)
		memcpy(q->data, buf, len);
	atomic_store_explicit(&q->cpu, cpu, memory_order_relaxed);
	r->seq = seq;
	atomic_store(&q->seq, seq);
	*broken = true;
	if (atomic_load(&r->page->wkr.sleeping)) {
		/* Our own nonblocking eventfd, which the worker never reads: it fails only once
		 * 2^64 - 2 rings have added up (or a worker wrote it full). */
		if (write(r->doorbell, &one, sizeof(one)) != sizeof(one))
			return -EPIPE;
	} else if (cpu >= 0 &&
		   cpu != atomic_load_explicit(&r->page->wkr.cpu, memory_order_relaxed)) {
		/* Awake on another CPU: the answer comes within its spin window. */
		spin = VB_RING_VMM_SPIN_NS;
	}
	e = wait_answer(r, seq, spin, timeout_ms, sock);
	if (e < 0)
		return e;
	msg[0] = '\0';
	return take_answer(r, op, buf, len, msg, msglen, broken);
}
