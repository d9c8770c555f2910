/*
 * broker_link: the broker channel of a worker in broker mode. Receives and checks the HANDOFF,
 * answers HEARTBEAT and REMOVAL, and forwards what only the broker may do (DMA mappings, the
 * SET_IRQS ioctl, device reset, VMM admission and presence) as calls that never wait: each is
 * sent at once and completes later, from the loop (broker_call.c). A VMM request that needs the
 * broker is answered once its calls have completed (defer.h: the handler does its local part,
 * the session reads no further request of that VMM meanwhile, the reply carries the broker's
 * result); meanwhile interrupts are forwarded, other connections accepted or refused, and the
 * broker's own requests (HEARTBEAT, REMOVAL) answered, all in the loop's order.
 *
 * A broker may restart under a running worker (issue 12). So a call waits a bounded time and
 * then fails with an error the VMM can act on ("it may be restarting; retry"); its request
 * stays in the channel and the next broker carries it out, and the late answer is compensated
 * here so that nothing the VMM was told failed stays done (a late DMA_MAP is unmapped, a late
 * SET_IRQS makes the index's routing be sent again, a late VMM_ADMIT's grant is closed). A
 * heartbeat of a new broker (its epoch differs) makes the worker re-send its VMM state and the
 * routing of every index whose SET_IRQS failed or went unanswered since.
 *
 * REMOVAL while a VMM request waits for the broker: served at once. The VMM hears the removal
 * event before the deferred reply; its REMOVAL_ACK, a request, is read after that reply (the
 * session's order), and the removal timeout runs meanwhile. If the channel ends, every call
 * fails with "broker channel closed" (the waiting VMM gets that error) before the worker ends.
 *
 * Trusts the broker more than the VMM (it is the privileged side), but still checks the handoff
 * against vfio-pci's limits before building a device from it: a bad table must end in a clear
 * refusal, not in undefined behaviour of the emulation.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "broker.pb-c.h"
#include "broker_call.h"
#include "broker_link.h"
#include "vfu.h"
#include "common.pb-c.h"
#include "ipc_uv.h"

struct wkr_broker {
	struct ipc_chan *chan; /* until wkr_broker_start */
	struct ipc_uv *u;
	struct ipc_msg *handoff;
	struct ipc_msg *removal; /* the REMOVAL request being served */
	struct wkr_server *srv;	 /* NULL when the native protocol is not served */
	struct wkr_vfu *vfu;	 /* NULL when vfio-user is not served */
	struct wkr_dev *dev;
	void (*gone)(void *data, int err);
	void *gone_data;
	void (*note)(void *data, const char *line);
	/* The broker instance (Handoff, Heartbeat); 0 while none said. */
	uint64_t epoch;
	struct wkr_bcalls calls;
	/* IRQ indexes (bits) whose SET_IRQS failed or went unanswered since the last re-attach,
	 * and those whose routing is to be sent again from the loop. */
	uint32_t irq_dirty, irq_resync;
	bool reattach; /* a new broker: re-send the VMM state from the loop */
	/* The re-sent routing's calls: until they complete, the servers are held (no VMM access
	 * may reach the device while an index is off in the kernel). */
	struct wkr_defer resync;
	struct {
		bool known, connected;
		pid_t pid;
		uid_t uid;
	} vmm;		 /* what the last VMM_STATE said */
	uv_timer_t kick; /* runs the re-sends from the loop */
	bool kick_open;
	int open_handles; /* libuv still holds them after wkr_broker_free() */
};

static struct ipc_chan *bchan(struct wkr_broker *b)
{
	return b->u ? ipc_uv_chan(b->u) : b->chan;
}

static void outcome(void *data, struct wkr_bcall *c, struct ipc_msg *m, int err);
static void resync_done(struct wkr_defer *d);

int wkr_broker_new(struct ipc_chan *chan, struct wkr_broker **ret)
{
	struct wkr_broker *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->chan = chan;
	b->resync.done = resync_done;
	b->resync.data = b;
	wkr_bcalls_init(&b->calls, WKR_BROKER_CALL_TIMEOUT_MS, outcome, b);
	*ret = b;
	return 0;
}

void wkr_broker_set_call_timeout(struct wkr_broker *b, int timeout_ms)
{
	b->calls.timeout_ms = timeout_ms;
}

void wkr_broker_set_note(struct wkr_broker *b, void (*note)(void *data, const char *line))
{
	b->note = note;
}

static void handle_closed(struct wkr_broker *b)
{
	if (--b->open_handles == 0)
		free(b);
}

static void kick_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void calls_closed(uv_handle_t *h)
{
	handle_closed(container_of((struct wkr_bcalls *)h->data, struct wkr_broker, calls));
}

void wkr_broker_free(struct wkr_broker *b)
{
	if (!b)
		return;
	ipc_msg_free(b->handoff);
	ipc_msg_free(b->removal);
	/* The servers go with the worker: a pending re-send lets go of nothing. */
	wkr_bcall_forget(&b->calls, &b->resync);
	if (b->u)
		ipc_uv_close(b->u, NULL);
	else
		ipc_chan_free(b->chan);
	/* The memory goes with the timers' handles, once libuv has let go of them. */
	b->open_handles = 2;
	b->calls.timer.data = &b->calls;
	wkr_bcalls_close(&b->calls, calls_closed);
	if (b->kick_open)
		uv_close((uv_handle_t *)&b->kick, kick_closed);
	else
		handle_closed(b);
}

__attribute__((format(printf, 2, 3))) static void note(struct wkr_broker *b, const char *fmt, ...)
{
	char line[300];
	va_list ap;

	if (!b->note)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	b->note(b->gone_data, line);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int region_from_pb(const Vb__Region *pr, struct wkr_devinfo *in, bool *seen,
			  struct vb_err *err)
{
	struct wkr_region *r;

	if (pr->index >= WKR_NUM_REGIONS || seen[pr->index]) {
		return vb_errf(err, -EINVAL, "region %u is out of range or listed twice",
			       pr->index);
	}
	if (pr->offset + pr->size < pr->offset || pr->n_mmap_areas > WKR_MMAP_AREAS_MAX) {
		return vb_errf(err, -EINVAL, "region %u: size or mmap areas out of range",
			       pr->index);
	}
	r = &in->regions[pr->index];
	seen[pr->index] = true;
	r->flags = pr->flags;
	r->size = pr->size;
	r->offset = pr->offset;
	r->msix_mappable = pr->msix_mappable;
	for (size_t i = 0; i < pr->n_mmap_areas; i++) {
		const Vb__MmapArea *a = pr->mmap_areas[i];

		if (a->size == 0 || a->offset >= pr->size || a->size > pr->size - a->offset) {
			return vb_errf(err, -EINVAL, "region %u: mmap area %zu lies outside it",
				       pr->index, i);
		}
		r->areas[i] = (struct wkr_mmap_area){a->offset, a->size};
	}
	r->nareas = (uint32_t)pr->n_mmap_areas;
	return 0;
}

static int handoff_from_pb(const Vb__Brk__Handoff *h, struct wkr_handoff *out, struct vb_err *err)
{
	bool seen_r[WKR_NUM_REGIONS] = {0}, seen_i[WKR_NUM_IRQS] = {0};
	uint32_t protos;

	memset(out, 0, sizeof(*out));
	/* Not 0: a caller cleaning up after a refused handoff would close its stdin. */
	out->device_fd = -1;
	out->listen_fd = -1;
	out->vfu_fd = -1;
	if (h->version != VB__BRK__VERSION__VERSION_CURRENT) {
		return vb_errf(err, -EPROTONOSUPPORT, "handoff version %u; this worker speaks %u",
			       h->version, VB__BRK__VERSION__VERSION_CURRENT);
	}
	if (!h->bdf || strlen(h->bdf) >= sizeof(out->info.bdf) || !h->vm ||
	    strlen(h->vm) >= sizeof(out->vm)) {
		return vb_errf(err, -EINVAL, "bdf or vm name missing or too long");
	}
	snprintf(out->info.bdf, sizeof(out->info.bdf), "%s", h->bdf);
	snprintf(out->info.name, sizeof(out->info.name), "%s", h->bdf);
	snprintf(out->vm, sizeof(out->vm), "%s", h->vm);
	out->info.flags = h->device_flags;
	for (size_t i = 0; i < h->n_regions; i++) {
		int r = region_from_pb(h->regions[i], &out->info, seen_r, err);

		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < h->n_irqs; i++) {
		const Vb__Irq *q = h->irqs[i];

		if (q->index >= WKR_NUM_IRQS || seen_i[q->index]) {
			return vb_errf(err, -EINVAL, "IRQ index %u is out of range or listed twice",
				       q->index);
		}
		seen_i[q->index] = true;
		out->info.irqs[q->index] = (struct wkr_irq_info){q->flags, q->count};
	}
	if (h->iommu_pgsize & (h->iommu_pgsize - 1)) {
		return vb_errf(err, -EINVAL, "IOMMU page size %#x is not a power of two",
			       h->iommu_pgsize);
	}
	protos = h->protocols ? h->protocols : VB__BRK__HANDOFF_PROTO__HANDOFF_PROTO_NATIVE;
	if (protos & ~(uint32_t)(VB__BRK__HANDOFF_PROTO__HANDOFF_PROTO_NATIVE |
				 VB__BRK__HANDOFF_PROTO__HANDOFF_PROTO_VFIO_USER))
		return vb_errf(err, -EINVAL, "unknown protocol bits %#x", h->protocols);
	out->native = protos & VB__BRK__HANDOFF_PROTO__HANDOFF_PROTO_NATIVE;
	out->vfio_user = protos & VB__BRK__HANDOFF_PROTO__HANDOFF_PROTO_VFIO_USER;
	out->owner_uid = h->owner_uid;
	out->allow_mmap = h->allow_mmap;
	out->iommu_pgsize = h->iommu_pgsize;
	out->generation = h->generation;
	if (h->limits) {
		out->max_dma_mappings = h->limits->max_dma_mappings;
		out->max_pinned_bytes = h->limits->max_pinned_bytes;
	}
	return 0;
}

int wkr_broker_handoff(struct wkr_broker *b, int timeout_ms, struct wkr_handoff *ret,
		       struct vb_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct ipc_msg *m = NULL;
	int r;
	size_t want;

	for (;;) {
		int64_t left;
		struct pollfd p;

		r = ipc_chan_recv(b->chan, &m);
		if (r != -EAGAIN)
			break;
		left = deadline - now_ms();
		p = (struct pollfd){.fd = ipc_chan_fd(b->chan), .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			return vb_errf(err, -ETIMEDOUT, "no HANDOFF within %d ms", timeout_ms);
		}
	}
	if (r < 0) {
		return vb_errf(err, r, "broker channel: %s", strerror(-r));
	}
	if (m->kind != IPC_KIND_REQUEST || m->type != VB__BRK__TYPE__HANDOFF || m->nfds < 2) {
		vb_errf(err, -EPROTO,
			"first message is type %u kind %u with %zu fds, not a HANDOFF", m->type,
			m->kind, m->nfds);
		if (m->kind == IPC_KIND_REQUEST)
			(void)ipc_chan_reply_error(b->chan, m, -EPROTO, "%s", err->msg);
		ipc_msg_free(m);
		return -EPROTO;
	}
	r = handoff_from_pb((const Vb__Brk__Handoff *)m->body, ret, err);
	if (r < 0) {
		(void)ipc_chan_reply_error(b->chan, m, r, "%s", err->msg);
		ipc_msg_free(m);
		return r;
	}
	/* The device, then one listening socket per protocol served, native first. */
	want = 1 + (size_t)ret->native + (size_t)ret->vfio_user;
	if (m->nfds != want) {
		r = vb_errf(err, -EPROTO, "HANDOFF for %s carries %zu fds, not %zu",
			    ret->native && ret->vfio_user ? "both protocols" : "one protocol",
			    m->nfds, want);
		(void)ipc_chan_reply_error(b->chan, m, r, "%s", err->msg);
		ipc_msg_free(m);
		return r;
	}
	b->epoch = ((const Vb__Brk__Handoff *)m->body)->epoch;
	ret->device_fd = ipc_msg_take_fd(m, 0);
	ret->listen_fd = ret->native ? ipc_msg_take_fd(m, 1) : -1;
	ret->vfu_fd = ret->vfio_user ? ipc_msg_take_fd(m, want - 1) : -1;
	b->handoff = m;
	return 0;
}

int wkr_broker_handoff_answer(struct wkr_broker *b, const struct vb_err *err)
{
	int r;

	if (!b->handoff)
		return -EINVAL;
	if (err) {
		r = ipc_chan_reply_error(bchan(b), b->handoff, err->code, "%s",
					 vb_err_msg(err, err->code));
	} else {
		Vb__Empty e = VB__EMPTY__INIT;

		r = ipc_chan_reply(bchan(b), b->handoff, &e.base, NULL, 0);
	}
	ipc_msg_free(b->handoff);
	b->handoff = NULL;
	return r;
}

/* ---- backend: requests to the broker ---------------------------------------------------- */

static void kick_run(uv_timer_t *t);

/* Has kick_run() called from the loop, on a stack that holds no request of a VMM. */
static void kick(struct wkr_broker *b)
{
	if (b->kick_open)
		uv_timer_start(&b->kick, kick_run, 0, 0);
}

static int send_call(struct wkr_broker *b, uint16_t type, const ProtobufCMessage *body,
		     const int *fds, size_t nfds, const struct wkr_bcall *meta, struct vb_err *err)
{
	return wkr_bcall_send(&b->calls, bchan(b), type, body, fds, nfds, meta, err);
}

/* A request nobody waits for (its answer is still recognised). */
static int send_detached(struct wkr_broker *b, uint16_t type, const ProtobufCMessage *body,
			 struct vb_err *err)
{
	struct wkr_defer *d = b->calls.collect;
	int r;

	b->calls.collect = NULL;
	r = send_call(b, type, body, NULL, 0, NULL, err);
	b->calls.collect = d;
	return r;
}

/* The answer to a call given up on: undo what the VMM was told had failed. */
static void compensate(struct wkr_broker *b, const struct wkr_bcall *c, const struct ipc_msg *m)
{
	bool done = m->kind == IPC_KIND_REPLY;

	switch (c->undo) {
	case WKR_UNDO_UNMAP:
		if (done) {
			Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
			int r;

			req.iova = c->iova;
			req.size = c->size;
			r = send_detached(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL);
			note(b,
			     "a DMA_MAP of %#llx+%#llx was done after the VMM was told it failed: "
			     "%s",
			     (unsigned long long)c->iova, (unsigned long long)c->size,
			     r < 0 ? "cannot unmap it again" : "unmapping it again");
		}
		break;
	case WKR_UNDO_ROUTING:
		note(b, "SET_IRQS of index %u answered late: sending its routing again", c->index);
		b->irq_resync |= 1u << c->index;
		kick(b);
		break;
	case WKR_UNDO_GRANT:
	case WKR_UNDO_NOTHING:
		break; /* the message's fds (a grant) are closed with it */
	}
}

/* An admission's answer in time: who the VMM is, and its grant. */
static void admitted(struct wkr_broker *b, struct wkr_admit *a, struct ipc_msg *m, int err)
{
	const Vb__Brk__VmmAdmitReply *rep;

	if (err < 0) {
		note(b, "a VMM connection was refused: %s",
		     err == -EPERM ? "the broker does not admit it" : strerror(-err));
		return;
	}
	rep = (const Vb__Brk__VmmAdmitReply *)m->body;
	a->pid = (pid_t)rep->pid;
	a->uid = (uid_t)rep->uid;
	/* The broker sends a grant only for a device that allows mmap; none is no error. */
	a->grant_fd = m->nfds == 1 ? ipc_msg_take_fd(m, 0) : -1;
	if (a->grant_fd < 0)
		a->grant_fd = -1;
}

/* Every outcome of a call, before whoever waits hears of it (broker_call.h). */
static void outcome(void *data, struct wkr_bcall *c, struct ipc_msg *m, int err)
{
	struct wkr_broker *b = data;

	if (c->late && m) {
		compensate(b, c, m);
		return;
	}
	/* A SET_IRQS that failed or went unanswered leaves the kernel's routing of the index in
	 * doubt: its whole routing is sent again when a broker is back (re-attach). */
	if (c->type == VB__BRK__TYPE__SET_IRQS && err < 0 && c->index < 32) {
		b->irq_dirty |= 1u << c->index;
		/* The VMM's retry must wait for a route of its own, not be told it exists. */
		if (b->dev)
			wkr_irq_doubt(b->dev, c->index);
		if (err != -EPIPE)
			note(b, "SET_IRQS of index %u failed: %s", c->index, strerror(-err));
		/* Unanswered: the broker that read it may be dead and its successor already
		 * attached (its heartbeat came during the wait), so a re-attach would not come
		 * again. The routing is sent again now, in the channel's order; a broker not yet
		 * there reads it when it comes. Once: a re-send that goes unanswered too waits
		 * for the next re-attach, so that VMM requests are not held past one timeout. */
		if (err == -ETIMEDOUT && !c->resend) {
			b->irq_resync |= 1u << c->index;
			kick(b);
		}
	}
	if (c->type == VB__BRK__TYPE__VMM_ADMIT && c->admit)
		admitted(b, c->admit, m, err);
}

/*
 * A VMM retries a DMA_MAP that timed out at once, as it is told to, usually over the same range.
 * The first one may still be in the channel, or have been carried out by a broker that died
 * before answering; either way the next broker sees it first, so the retry would fail as an
 * overlap (EEXIST) and the first one's undoing, which waits for its answer, might never come.
 * So the range of every unanswered DMA_MAP the new one overlaps is unmapped first, in the
 * channel's order: what the VMM asked last is what holds (an unmap of nothing only fails).
 */
static void undo_late_maps(struct wkr_broker *b, uint64_t iova, uint64_t size)
{
	for (size_t i = 0; i < b->calls.n; i++) {
		struct wkr_bcall *c = &b->calls.tab[i];
		Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
		int r;

		if (!c->late || c->undo != WKR_UNDO_UNMAP || iova >= c->iova + c->size ||
		    c->iova >= iova + size)
			continue;
		req.iova = c->iova;
		req.size = c->size;
		r = send_detached(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL);
		if (r == 0)
			c->undo =
			    WKR_UNDO_NOTHING; /* its answer, when it comes, needs nothing more */
		note(b, "a DMA_MAP over %#llx+%#llx, whose earlier DMA_MAP went unanswered: %s",
		     (unsigned long long)req.iova, (unsigned long long)req.size,
		     r < 0 ? "cannot unmap that first" : "unmapping that first");
	}
}

static int b_dma_map(void *ctx, uint64_t iova, uint64_t size, uint64_t offset, uint32_t prot,
		     int memfd, struct vb_err *err)
{
	Vb__DmaMap req = VB__DMA_MAP__INIT;
	struct wkr_bcall meta = {.undo = WKR_UNDO_UNMAP, .iova = iova, .size = size};

	undo_late_maps(ctx, iova, size);
	req.iova = iova;
	req.size = size;
	req.offset = offset;
	req.prot = prot;
	return send_call(ctx, VB__BRK__TYPE__DMA_MAP, &req.base, &memfd, 1, &meta, err);
}

static int b_dma_unmap(void *ctx, uint64_t iova, uint64_t size, struct vb_err *err)
{
	Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;

	req.iova = iova;
	req.size = size;
	return send_call(ctx, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL, 0, NULL, err);
}

static int b_dma_unmap_all(void *ctx)
{
	Vb__Empty e = VB__EMPTY__INIT;

	return send_call(ctx, VB__BRK__TYPE__DMA_UNMAP_ALL, &e.base, NULL, 0, NULL, NULL);
}

/* A SET_IRQS; one that cannot even be sent leaves the index in doubt as a failed one does. */
static int call_irqs(struct wkr_broker *b, const Vb__Brk__SetIrqs *req, const int *fds, size_t nfds)
{
	struct wkr_bcall meta = {.undo = WKR_UNDO_ROUTING,
				 .index = req->index,
				 .resend = b->calls.collect == &b->resync};
	int r = send_call(b, VB__BRK__TYPE__SET_IRQS, &req->base, fds, nfds, &meta, NULL);

	if (r < 0 && req->index < 32)
		b->irq_dirty |= 1u << req->index;
	return r;
}

/* One SET_IRQS datagram for vectors [start, start+count) of which the first `nreal` carry the
 * fds in `fds` (the rest: no trigger). */
static int set_irqs_chunk(struct wkr_broker *b, const struct wkr_irq_set *s, uint32_t start,
			  uint32_t count, const int *fds, uint32_t nreal)
{
	Vb__Brk__SetIrqs req = VB__BRK__SET_IRQS__INIT;
	int32_t *slots = calloc(count, sizeof(*slots));
	int attach[IPC_FDS_MAX];
	size_t nattach = 0;
	int r;

	if (!slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		size_t k = 0;

		slots[i] = -1;
		if (i >= nreal || fds[i] < 0)
			continue;
		while (k < nattach && attach[k] != fds[i])
			k++;
		if (k == nattach)
			attach[nattach++] = fds[i];
		slots[i] = (int32_t)k;
	}
	req.index = s->index;
	req.start = start;
	req.count = count;
	req.action = s->action;
	req.fd_slots = slots;
	req.n_fd_slots = count;
	r = call_irqs(b, &req, attach, nattach);
	free(slots);
	return r;
}

static int b_disable(struct wkr_broker *b, uint32_t index)
{
	Vb__Brk__SetIrqs req = VB__BRK__SET_IRQS__INIT;

	req.index = index;
	req.action = VFIO_IRQ_SET_ACTION_TRIGGER;
	req.disable = true;
	return call_irqs(b, &req, NULL, 0);
}

static int b_set_irqs(void *ctx, const struct wkr_irq_set *s)
{
	struct wkr_broker *b = ctx;
	const uint32_t per = ipc_limits_default.max_fds;
	uint32_t done = 0;

	if (s->disable)
		return b_disable(b, s->index);
	if (!s->fds) {
		/* DATA_NONE (an INTx mask or unmask): no slots at all. */
		Vb__Brk__SetIrqs req = VB__BRK__SET_IRQS__INIT;

		req.index = s->index;
		req.start = s->start;
		req.count = s->count;
		req.action = s->action;
		return call_irqs(b, &req, NULL, 0);
	}
	if (s->enable) {
		/* The first request sizes the kernel's allocation: all vectors, the fds of as many
		 * as one datagram carries; the others get theirs below. */
		uint32_t n = s->count < per ? s->count : per;
		int r = set_irqs_chunk(b, s, s->start, s->count, s->fds, n);

		if (r < 0)
			return r;
		done = n;
	}
	while (done < s->count) {
		uint32_t n = s->count - done < per ? s->count - done : per;
		int r = set_irqs_chunk(b, s, s->start + done, n, s->fds + done, n);

		if (r < 0) {
			/* The first chunk enabled the index in the kernel; the caller records it
			 * as off, so it must be off (a later disable would otherwise be skipped
			 * and the next enable refused as busy). */
			if (s->enable)
				(void)b_disable(b, s->index);
			return r;
		}
		done += n;
	}
	return 0;
}

static int b_reset(void *ctx, struct vb_err *err)
{
	Vb__Empty e = VB__EMPTY__INIT;

	return send_call(ctx, VB__BRK__TYPE__RESET, &e.base, NULL, 0, NULL, err);
}

/* Told, never waited for: the broker's record of the VMM follows in the channel's order. */
static void send_vmm_state(struct wkr_broker *b)
{
	Vb__Brk__VmmState req = VB__BRK__VMM_STATE__INIT;
	struct vb_err err = {0};

	req.connected = b->vmm.connected;
	req.pid = (uint32_t)b->vmm.pid;
	req.uid = (uint32_t)b->vmm.uid;
	if (send_detached(b, VB__BRK__TYPE__VMM_STATE, &req.base, &err) < 0)
		note(b, "telling the broker the VMM %s failed: %s",
		     b->vmm.connected ? "connected" : "left", err.msg);
}

static void b_vmm_state(void *ctx, bool connected, pid_t pid, uid_t uid)
{
	struct wkr_broker *b = ctx;

	/* Kept for a broker that adopts us later. */
	b->vmm.known = true;
	b->vmm.connected = connected;
	b->vmm.pid = pid;
	b->vmm.uid = uid;
	send_vmm_state(b);
}

/* The worker's user namespace maps no uid but its own, so SO_PEERCRED here would call every
 * VMM "nobody": the broker, which sees the host's ids, decides (outcome() fills `ret`). */
static int b_vmm_admit(void *ctx, int conn_fd, uid_t owner_uid, struct wkr_admit *ret)
{
	struct wkr_broker *b = ctx;
	Vb__Empty e = VB__EMPTY__INIT;
	struct wkr_bcall meta = {.undo = WKR_UNDO_GRANT, .admit = ret};
	struct vb_err err = {0};
	int r = send_call(b, VB__BRK__TYPE__VMM_ADMIT, &e.base, &conn_fd, 1, &meta, &err);

	(void)owner_uid;
	if (r < 0)
		note(b, "a VMM's connection could not be admitted: %s", err.msg);
	return r;
}

static void b_collect(void *ctx, struct wkr_defer *d)
{
	struct wkr_broker *b = ctx;

	b->calls.collect = d;
}

static void b_forget(void *ctx, struct wkr_defer *d)
{
	struct wkr_broker *b = ctx;

	wkr_bcall_forget(&b->calls, d);
}

const struct wkr_backend_ops wkr_broker_ops = {
    .dma_map = b_dma_map,
    .dma_unmap = b_dma_unmap,
    .dma_unmap_all = b_dma_unmap_all,
    .set_irqs = b_set_irqs,
    .reset = b_reset,
    .vmm_state = b_vmm_state,
    .vmm_admit = b_vmm_admit,
    .collect = b_collect,
    .forget = b_forget,
};

/* ---- the broker's requests ---------------------------------------------------------------- */

static void removal_done(void *data, bool acked)
{
	struct wkr_broker *b = data;
	Vb__Brk__RemovalReply rep = VB__BRK__REMOVAL_REPLY__INIT;

	rep.vmm_acknowledged = acked;
	if (b->removal)
		(void)ipc_chan_reply(bchan(b), b->removal, &rep.base, NULL, 0);
	ipc_msg_free(b->removal);
	b->removal = NULL;
}

static void on_heartbeat(struct wkr_broker *b, struct ipc_msg *m)
{
	const Vb__Brk__Heartbeat *hb = (const Vb__Brk__Heartbeat *)m->body;
	Vb__Brk__HeartbeatReply rep = VB__BRK__HEARTBEAT_REPLY__INIT;

	rep.seq = hb->seq;
	rep.vmm_connected = wkr_server_connected(b->srv) || wkr_vfu_connected(b->vfu);
	rep.requests_served = wkr_server_requests(b->srv) + wkr_vfu_requests(b->vfu);
	rep.interrupts_pending = wkr_irq_pending(b->dev);
	(void)ipc_chan_reply(bchan(b), m, &rep.base, NULL, 0);
	if (hb->epoch == 0 || hb->epoch == b->epoch)
		return;
	/* Another broker instance has adopted us (the first one we hear of counts only when the
	 * handoff did not say). */
	if (b->epoch) {
		note(b, "a new broker (epoch %016llx) has adopted the device: re-attaching",
		     (unsigned long long)hb->epoch);
		b->reattach = true;
		kick(b);
	}
	b->epoch = hb->epoch;
}

/* A request of the broker other than a heartbeat; owns `m`. */
static void dispatch(struct wkr_broker *b, struct ipc_msg *m)
{
	uint32_t ms;

	switch (m->type) {
	case VB__BRK__TYPE__REMOVAL:
		if (b->removal) {
			(void)ipc_chan_reply_error(bchan(b), m, -EBUSY, "a removal is pending");
			break;
		}
		b->removal = m;
		m = NULL;
		ms = ((const Vb__Brk__Removal *)b->removal->body)->timeout_ms;
		/* Whichever protocol's VMM holds the device is asked. */
		if (wkr_vfu_connected(b->vfu))
			(void)wkr_vfu_removal(b->vfu, ms, removal_done, b);
		else if (b->srv)
			(void)wkr_server_removal(b->srv, ms, removal_done, b);
		else
			removal_done(b, false);
		break;
	case VB__BRK__TYPE__HANDOFF:
		(void)ipc_chan_reply_error(bchan(b), m, -EALREADY, "the worker has its device");
		break;
	default:
		(void)ipc_chan_reply_error(bchan(b), m, -EOPNOTSUPP,
					   "the worker does not serve type %u", m->type);
		break;
	}
	ipc_msg_free(m);
}

/* Whatever the broker sent; owns `m`. */
static void handle(struct wkr_broker *b, struct ipc_msg *m)
{
	if (m->kind == IPC_KIND_REPLY || m->kind == IPC_KIND_ERROR) {
		/* An answer that matches no call: the channel checked its id; nothing to do. */
		(void)wkr_bcall_answer(&b->calls, m);
	} else if (m->kind == IPC_KIND_REQUEST && m->type == VB__BRK__TYPE__HEARTBEAT) {
		on_heartbeat(b, m);
	} else if (m->kind == IPC_KIND_REQUEST) {
		dispatch(b, m);
		return;
	}
	ipc_msg_free(m);
}

/* Holds or lets go of every VMM request, of both protocols. */
static void hold(struct wkr_broker *b, bool held)
{
	wkr_server_hold(b->srv, held);
	wkr_vfu_hold(b->vfu, held);
}

/* The re-sent routing is in the kernel (or its calls failed, which left their indexes in
 * doubt for the next attempt): VMM requests go on, and what came up meanwhile is re-sent. */
static void resync_done(struct wkr_defer *d)
{
	struct wkr_broker *b = d->data;

	hold(b, false);
	if (b->reattach || b->irq_resync)
		kick(b);
}

/* From the loop: what a new broker or a late answer asked for. An index's routing is sent
 * again as "off, then on" (wkr_irq_resync): the calls are not waited for, so the servers are
 * held until both are answered; otherwise a VMM access between the two could raise an
 * interrupt while the index is off, and it would be lost (the synchronous calls of old held
 * the loop instead). */
static void kick_run(uv_timer_t *t)
{
	struct wkr_broker *b = t->data;
	struct wkr_defer *collect;

	if (b->resync.waiting)
		return; /* resync_done() comes back here */
	if (b->reattach) {
		b->reattach = false;
		if (b->vmm.known)
			send_vmm_state(b);
		b->irq_resync |= b->irq_dirty;
		b->irq_dirty = 0;
	}
	if (!b->irq_resync || !b->dev)
		return;
	collect = b->calls.collect;
	wkr_defer_begin(&b->resync, NULL, true);
	b->calls.collect = &b->resync;
	while (b->irq_resync && b->dev) {
		uint32_t index = (uint32_t)__builtin_ctz(b->irq_resync);
		int r;

		b->irq_resync &= ~(1u << index);
		r = wkr_irq_resync(b->dev, index);
		if (r < 0) {
			note(b, "sending the routing of IRQ index %u again failed: %s", index,
			     strerror(-r));
			b->irq_dirty |= 1u << index;
		}
	}
	b->calls.collect = collect;
	if (wkr_defer_end(&b->resync))
		hold(b, true);
}

static void on_broker(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct wkr_broker *b = data;

	if (!m) {
		/* Whoever waits for a call hears the channel ended before the worker does. */
		wkr_bcall_fail_all(&b->calls);
		b->gone(b->gone_data, err);
		return;
	}
	handle(b, m);
}

int wkr_broker_start(struct wkr_broker *b, uv_loop_t *loop, struct wkr_server *srv,
		     struct wkr_vfu *vfu, struct wkr_dev *dev, void (*gone)(void *data, int err),
		     void *data)
{
	int r;

	b->srv = srv;
	b->vfu = vfu;
	b->dev = dev;
	b->gone = gone;
	b->gone_data = data;
	r = uv_timer_init(loop, &b->kick);
	if (r < 0)
		return r;
	b->kick.data = b;
	b->kick_open = true;
	r = wkr_bcalls_start(&b->calls, loop);
	if (r < 0)
		return r;
	r = ipc_uv_start(loop, b->chan, on_broker, b, &b->u);
	if (r == 0)
		b->chan = NULL;
	return r;
}
