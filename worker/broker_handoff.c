/*
 * broker_handoff: the HANDOFF, the broker's first request to a worker. Waits for it (bounded,
 * before the loop runs), checks it and answers it once the worker is ready to serve.
 *
 * Trusts the broker more than the VMM (it is the privileged side), but still checks the handoff
 * against vfio-pci's limits before building a device from it: a bad table must end in a clear
 * refusal, not in undefined behaviour of the emulation.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker.pb-c.h"
#include "broker_link_internal.h"
#include "common.pb-c.h"

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
	out->rlimit_nofile = h->rlimit_nofile;
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
		r = ipc_chan_reply_error(wkr_broker__chan(b), b->handoff, err->code, "%s",
					 vb_err_msg(err, err->code));
	} else {
		Vb__Empty e = VB__EMPTY__INIT;

		r = ipc_chan_reply(wkr_broker__chan(b), b->handoff, &e.base, NULL, 0);
	}
	ipc_msg_free(b->handoff);
	b->handoff = NULL;
	return r;
}
