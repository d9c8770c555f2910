/*
 * broker_ops: the worker's backend in broker mode (backend.h): what only the broker may do (DMA
 * mappings, the SET_IRQS ioctl, device reset, VMM admission and presence) goes out as calls that
 * never wait (broker_call.c), and every outcome of those calls is heard here first.
 *
 * A broker may restart under a running worker (issue 12). A call waits a bounded time, then
 * fails with an error the VMM can act on ("it may be restarting; retry"); its request stays in
 * the channel and the next broker carries it out, so what the VMM was told failed is undone here
 * (a DMA_MAP unmapped, an IRQ index's routing sent again, a VMM_ADMIT's grant closed).
 *
 * Trusts the broker's answers to be for the request they name (ipc checks ids); trusts the
 * emulation's requests, which the servers checked against the VMM's limits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.pb-c.h"
#include "broker_link_internal.h"
#include "common.pb-c.h"

static int send_call(struct wkr_broker *b, uint16_t type, const ProtobufCMessage *body,
		     const int *fds, size_t nfds, const struct wkr_bcall *meta, struct vb_err *err)
{
	return wkr_bcall_send(&b->calls, wkr_broker__chan(b), type, body, fds, nfds, meta, err);
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

/* ---- what the VMM was told failed: timed-out unmaps, unanswered maps ---------------------- */

static bool overlaps(uint64_t a, uint64_t asize, uint64_t b, uint64_t bsize)
{
	return a < b + bsize && b < a + asize;
}

static void lost_forget(struct wkr_broker *b, size_t i)
{
	memmove(&b->lost_unmaps[i], &b->lost_unmaps[i + 1],
		(b->nlost - i - 1) * sizeof(b->lost_unmaps[0]));
	b->nlost--;
}

static void lost_add(struct wkr_broker *b, uint64_t iova, uint64_t size)
{
	if (b->nlost == WKR_LOST_UNMAPS_MAX)
		lost_forget(b, 0);
	b->lost_unmaps[b->nlost].iova = iova;
	b->lost_unmaps[b->nlost].size = size;
	b->nlost++;
}

/* Forgets the timed-out unmap of exactly [iova, iova+size); true if there was one. */
static bool lost_take(struct wkr_broker *b, uint64_t iova, uint64_t size)
{
	for (size_t i = 0; i < b->nlost; i++) {
		if (b->lost_unmaps[i].iova == iova && b->lost_unmaps[i].size == size) {
			lost_forget(b, i);
			return true;
		}
	}
	return false;
}

/* A map over a timed-out unmap's range: a later unmap there is the VMM's own, no retry. */
static void lost_forget_overlaps(struct wkr_broker *b, uint64_t iova, uint64_t size)
{
	for (size_t i = b->nlost; i-- > 0;)
		if (overlaps(iova, size, b->lost_unmaps[i].iova, b->lost_unmaps[i].size))
			lost_forget(b, i);
}

/*
 * The unmap, in the channel's order, of every DMA_MAP over [iova, iova+size) that the VMM was
 * told failed and whose undoing is still owed. Whoever carries the map out (a broker that dies
 * before answering, or the next one reading it from the channel) carries this out after it, so
 * the kernel ends as the VMM was told whether or not an answer ever comes; an unmap of a range
 * the map never reached only fails (ENOENT), which nobody waits for.
 */
static void undo_maps_over(struct wkr_broker *b, uint64_t iova, uint64_t size, const char *why)
{
	for (size_t i = 0; i < b->calls.n; i++) {
		struct wkr_bcall *c = &b->calls.tab[i];
		Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
		int r;

		if (!c->late || c->undo != WKR_UNDO_UNMAP ||
		    !overlaps(iova, size, c->iova, c->size))
			continue;
		req.iova = c->iova;
		req.size = c->size;
		r = send_detached(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL);
		if (r == 0)
			c->undo = WKR_UNDO_NOTHING; /* its answer, when it comes, needs nothing */
		wkr_broker__note(b, "a DMA_MAP of %#llx+%#llx went unanswered (%s): %s",
				 (unsigned long long)req.iova, (unsigned long long)req.size, why,
				 r < 0 ? "cannot unmap its range yet" : "unmapping its range");
	}
}

void wkr_broker__undo_late_maps(struct wkr_broker *b)
{
	undo_maps_over(b, 0, UINT64_MAX, "a new broker attached");
}

/* The answer to a call given up on: undo what the VMM was told had failed. */
static void compensate(struct wkr_broker *b, const struct wkr_bcall *c, const struct ipc_msg *m)
{
	bool done = m->kind == IPC_KIND_REPLY;

	/* The first unmap found nothing to unmap: the VMM's retry is told so too. */
	if (c->type == VB__BRK__TYPE__DMA_UNMAP && c->size && !c->retried && !done &&
	    ((const Vb__Error *)m->body)->code == ENOENT) {
		(void)lost_take(b, c->iova, c->size);
		for (size_t i = 0; i < b->calls.n; i++) {
			struct wkr_bcall *o = &b->calls.tab[i];

			if (o->type == VB__BRK__TYPE__DMA_UNMAP && o->iova == c->iova &&
			    o->size == c->size)
				o->retried = false;
		}
	}
	switch (c->undo) {
	case WKR_UNDO_UNMAP:
	case WKR_UNDO_UNMAP_IF_DONE:
		if (done) {
			Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
			int r;

			req.iova = c->iova;
			req.size = c->size;
			r = send_detached(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL);
			wkr_broker__note(
			    b,
			    "a DMA_MAP of %#llx+%#llx was done after the VMM was told it failed: "
			    "%s",
			    (unsigned long long)c->iova, (unsigned long long)c->size,
			    r < 0 ? "cannot unmap it again" : "unmapping it again");
		}
		break;
	case WKR_UNDO_ROUTING:
		wkr_broker__note(b, "SET_IRQS of index %u answered late: sending its routing again",
				 c->index);
		b->irq_resync |= 1u << c->index;
		wkr_broker__kick(b);
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
		wkr_broker__note(b, "a VMM connection was refused: %s",
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

/* Holds a range the broker mapped; one the worker cannot remember is only at risk of being
 * unmapped by a timed-out map over it, so it is said. */
static void hold_range(struct wkr_broker *b, uint64_t iova, uint64_t size)
{
	if (wkr_held_add(&b->held, iova, size) < 0)
		wkr_broker__note(b, "out of memory: the mapping of %#llx+%#llx is not remembered",
				 (unsigned long long)iova, (unsigned long long)size);
}

/* A VMM's DMA_UNMAP: one that timed out is remembered for its retry, and the retry's ENOENT
 * means the first one was carried out after all (the range is gone, as the VMM asked). One the
 * broker refused in time leaves the range held as it was, unless it was not there (ENOENT). */
static int unmap_outcome(struct wkr_broker *b, struct wkr_bcall *c, struct ipc_msg *m, int err)
{
	if (!m && err == -ETIMEDOUT) {
		lost_add(b, c->iova, c->size);
	} else if (m && c->retried && err == -ENOENT) {
		wkr_broker__note(b,
				 "a retried DMA_UNMAP of %#llx+%#llx: the range is gone (the one "
				 "that timed out was carried out): done",
				 (unsigned long long)c->iova, (unsigned long long)c->size);
		return 0;
	} else if (m && err < 0 && err != -ENOENT && c->held) {
		hold_range(b, c->iova, c->size);
	}
	return err;
}

/* A call given up on whose answer will never come (a fence's verdict, broker_call.h): what it
 * still owes is done now, since no answer will prompt it. Only a DMA_MAP's unmap can still be
 * owed (it could not be sent when the map was given up on, nor at the re-attach). */
static void forgotten(struct wkr_broker *b, const struct wkr_bcall *c)
{
	Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
	int r;

	if (c->undo != WKR_UNDO_UNMAP)
		return;
	req.iova = c->iova;
	req.size = c->size;
	r = send_detached(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL);
	wkr_broker__note(b, "a DMA_MAP of %#llx+%#llx will never be answered: %s",
			 (unsigned long long)c->iova, (unsigned long long)c->size,
			 r < 0 ? "cannot unmap its range (it may stay mapped until the VMM leaves)"
			       : "unmapping its range");
}

/* A new broker has attached and answers SYNC: the fence that lets go of every call the last one
 * read and never answered (broker_call.h). One that cannot be sent now (a full table) is sent
 * from the loop once an answer has made room. */
void wkr_broker__send_fence(struct wkr_broker *b)
{
	Vb__Empty e = VB__EMPTY__INIT;
	struct wkr_bcall meta = {.undo = WKR_UNDO_NOTHING, .fence = true};
	struct wkr_defer *d = b->calls.collect;
	struct vb_err err = {0};

	b->calls.collect = NULL;
	b->fence_owed = send_call(b, VB__BRK__TYPE__SYNC, &e.base, NULL, 0, &meta, &err) < 0;
	b->calls.collect = d;
	if (b->fence_owed)
		wkr_broker__note(b, "cannot send SYNC to the new broker yet: %s", err.msg);
}

/* Every outcome of a call, before whoever waits hears of it (broker_call.h). */
int wkr_broker__outcome(void *data, struct wkr_bcall *c, struct ipc_msg *m, int err)
{
	struct wkr_broker *b = data;

	if (m && b->fence_owed)
		wkr_broker__kick(b); /* an answer made room for it */
	if (err == -ECANCELED && !m) {
		forgotten(b, c);
		return err;
	}
	if (c->late && m) {
		compensate(b, c, m);
		return err;
	}
	/* The VMM is told its map failed: the kernel must not keep it, whether or not an answer
	 * ever comes (a broker killed after the map never answers, and its successor finds the
	 * mapping committed in its record). */
	if (c->type == VB__BRK__TYPE__DMA_MAP && !m && err == -ETIMEDOUT)
		undo_maps_over(b, c->iova, c->size, "the VMM is told it failed");
	/* Not a map sent before an unmap-all (its VMM left meanwhile): that undid it. */
	if (c->type == VB__BRK__TYPE__DMA_MAP && m && err == 0 && c->seq >= b->held_from)
		hold_range(b, c->iova, c->size);
	if (c->type == VB__BRK__TYPE__DMA_UNMAP && c->size)
		return unmap_outcome(b, c, m, err);
	/* A SET_IRQS that failed or went unanswered leaves the kernel's routing of the index in
	 * doubt: its whole routing is sent again when a broker is back (re-attach). */
	if (c->type == VB__BRK__TYPE__SET_IRQS && err < 0 && c->index < 32) {
		b->irq_dirty |= 1u << c->index;
		/* The VMM's retry must wait for a route of its own, not be told it exists. */
		if (b->dev)
			wkr_irq_doubt(b->dev, c->index);
		if (err != -EPIPE)
			wkr_broker__note(b, "SET_IRQS of index %u failed: %s", c->index,
					 strerror(-err));
		/* Unanswered: the broker that read it may be dead and its successor already
		 * attached (its heartbeat came during the wait), so a re-attach would not come
		 * again. The routing is sent again now, in the channel's order; a broker not yet
		 * there reads it when it comes. Once: a re-send that goes unanswered too waits
		 * for the next re-attach, so that VMM requests are not held past one timeout. */
		if (err == -ETIMEDOUT && !c->resend) {
			b->irq_resync |= 1u << c->index;
			wkr_broker__kick(b);
		}
	}
	if (c->type == VB__BRK__TYPE__VMM_ADMIT && c->admit)
		admitted(b, c->admit, m, err);
	return err;
}

/*
 * A VMM retries a DMA_MAP that timed out at once, as it is told to, usually over the same range.
 * The unmap of the first one's range normally went out when it timed out; if it could not be
 * sent then, it goes now, before the retry (else the next broker, carrying out both maps, would
 * fail the retry as an overlap, EEXIST): what the VMM asked last is what holds.
 *
 * Only what a map could create is unmapped when it times out: over a range the VMM holds (a
 * mapping done before, not unmapped since, e.g. the same map sent twice) the broker refuses it
 * as an overlap and creates nothing, and its range's unmap would remove the VMM's mapping. Such
 * a map is undone only if its answer says it was done after all.
 */
static int b_dma_map(void *ctx, uint64_t iova, uint64_t size, uint64_t offset, uint32_t prot,
		     int memfd, struct vb_err *err)
{
	struct wkr_broker *b = ctx;
	Vb__DmaMap req = VB__DMA_MAP__INIT;
	struct wkr_bcall meta = {.undo = WKR_UNDO_UNMAP, .iova = iova, .size = size};

	if (wkr_held_overlaps(&b->held, iova, size))
		meta.undo = WKR_UNDO_UNMAP_IF_DONE;
	undo_maps_over(ctx, iova, size, "mapped again");
	lost_forget_overlaps(ctx, iova, size);
	req.iova = iova;
	req.size = size;
	req.offset = offset;
	req.prot = prot;
	return send_call(ctx, VB__BRK__TYPE__DMA_MAP, &req.base, &memfd, 1, &meta, err);
}

/* The retry of an unmap that timed out, for the same range, is told it is done when the range
 * is gone; any other unmap of a range not mapped is still ENOENT. */
static int b_dma_unmap(void *ctx, uint64_t iova, uint64_t size, struct vb_err *err)
{
	struct wkr_broker *b = ctx;
	Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;
	struct wkr_bcall meta = {.undo = WKR_UNDO_NOTHING, .iova = iova, .size = size};
	int r;

	/* No longer held from here on in the channel's order (a map behind it may create it). */
	meta.held = wkr_held_remove(&b->held, iova, size);
	meta.retried = lost_take(b, iova, size);
	req.iova = iova;
	req.size = size;
	r = send_call(b, VB__BRK__TYPE__DMA_UNMAP, &req.base, NULL, 0, &meta, err);
	if (r < 0 && meta.held)
		hold_range(b, iova, size);
	return r;
}

static int b_dma_unmap_all(void *ctx)
{
	struct wkr_broker *b = ctx;
	Vb__Empty e = VB__EMPTY__INIT;

	b->nlost = 0;
	wkr_held_clear(&b->held);
	b->held_from = b->calls.sent;
	return send_call(b, VB__BRK__TYPE__DMA_UNMAP_ALL, &e.base, NULL, 0, NULL, NULL);
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
void wkr_broker__send_vmm_state(struct wkr_broker *b)
{
	Vb__Brk__VmmState req = VB__BRK__VMM_STATE__INIT;
	struct vb_err err = {0};

	req.connected = b->vmm.connected;
	req.pid = (uint32_t)b->vmm.pid;
	req.uid = (uint32_t)b->vmm.uid;
	if (send_detached(b, VB__BRK__TYPE__VMM_STATE, &req.base, &err) < 0)
		wkr_broker__note(b, "telling the broker the VMM %s failed: %s",
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
	wkr_broker__send_vmm_state(b);
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
		wkr_broker__note(b, "a VMM's connection could not be admitted: %s", err.msg);
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
