/*
 * server_req: the request table of the VMM protocol and its handlers. Every request is checked
 * (sizes, indexes, flags, overflow, alignment, fd counts) before the device or the backend is
 * touched; every request is answered, an error reply naming the reason when it cannot be served.
 *
 * A handler whose request needs the backend (DMA, interrupt routing, reset, and any config or
 * BAR write that changes the routing) does its local part, sends the backend's calls and chains
 * the step that answers with then(); the answer goes once those calls have completed (defer.h),
 * and the session reads no further request of its VMM until then. The emulated state changes at
 * once, the reply waits for the routing: a VMM never sees its write answered before the route
 * exists.
 *
 * Trusts: the ipc layer's decoding (message type matches its body, fd counts within the type's
 * bounds). Distrusts every field value.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "base.h"
#include "common.pb-c.h"
#include "device.pb-c.h"
#include "ipc_uv.h"
#include "dispatch.h"
#include "server_internal.h"
#include "vmm_ops.h"

/* The wire limit the VMM splits by is the one the device model enforces. */
_Static_assert(WKR_ACCESS_MAX == VB__DEV__LIMIT__ACCESS_MAX, "access limits disagree");

__attribute__((format(printf, 3, 4))) static int fail(struct wkr_server *s, int err,
						      const char *fmt, ...)
{
	va_list ap;

	s->err.code = err;
	va_start(ap, fmt);
	vsnprintf(s->err.msg, sizeof(s->err.msg), fmt, ap);
	va_end(ap);
	return err;
}

static struct ipc_chan *chan(struct wkr_server *s)
{
	return wkr__server_session(s)->chan;
}

/* A reply that cannot be sent or queued ends the session once the request is done with. */
static int reply(struct wkr_server *s, struct ipc_msg *m, const ProtobufCMessage *body,
		 const int *fds, size_t nfds)
{
	if (wkr__server_ring_reply(s, m, body, 0, NULL))
		return 0;
	wkr__server_sent(s, ipc_chan_reply(chan(s), m, body, fds, nfds));
	return 0;
}

/* An error answer, on the page for a ring's request, else on the socket. */
static void reply_error(struct wkr_server *s, struct ipc_msg *m, int err, const char *msg)
{
	if (!wkr__server_ring_reply(s, m, NULL, err, msg))
		wkr__server_sent(s, ipc_chan_reply_error(chan(s), m, err, "%s", msg));
}

static int reply_empty(struct wkr_server *s, struct ipc_msg *m)
{
	Vb__Empty e = VB__EMPTY__INIT;

	return reply(s, m, &e.base, NULL, 0);
}

/* Goes on with `next` once the calls this step made have completed without error. */
static int then(struct wkr_server *s, int (*next)(struct wkr_server *s, struct ipc_msg *m))
{
	wkr__server_session(s)->then = next;
	return 0;
}

static int h_hello(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__Hello *h = (const Vb__Dev__Hello *)m->body;
	Vb__Dev__HelloReply rep = VB__DEV__HELLO_REPLY__INIT;
	Vb__Dev__RingAnswer ring = VB__DEV__RING_ANSWER__INIT;
	Vb__Limits lim = VB__LIMITS__INIT;
	struct vb_err rerr = {0};

	if (s->hello_done)
		return fail(s, -EALREADY, "HELLO was already answered on this connection");
	if (h->version != VB__DEV__VERSION__VERSION_CURRENT)
		return fail(s, -EPROTONOSUPPORT, "protocol version %u; this worker speaks %u",
			    h->version, VB__DEV__VERSION__VERSION_CURRENT);
	lim.max_message_bytes = s->limits.max_datagram;
	lim.max_fds = s->limits.max_fds;
	lim.max_outstanding = s->limits.max_outstanding;
	lim.max_dma_mappings = s->cfg.max_dma_mappings;
	lim.max_pinned_bytes = s->cfg.max_pinned_bytes;
	rep.version = VB__DEV__VERSION__VERSION_CURRENT;
	rep.limits = &lim;
	rep.bdf = (char *)wkr_dev_info(s->cfg.dev)->bdf;
	rep.broker_wait_ms = s->cfg.broker_wait_ms;
	if (h->ring) {
		/* A ring refused is an answer, not a failed HELLO: the socket serves on. */
		int e = wkr__server_ring_open(s, m, h->ring->layout, &rerr);

		ring.accepted = e == 0;
		ring.error = e < 0 ? (uint32_t)-e : 0;
		ring.reason = e < 0 ? rerr.msg : "";
		rep.ring = &ring;
	}
	s->hello_done = true;
	reply(s, m, &rep.base, NULL, 0);
	if (s->cfg.generation && !s->restart_announced) {
		/* The previous worker of this device died: the VMM must re-read and re-program. */
		s->restart_announced = true;
		(void)wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_WORKER_RESTARTED,
					wkr_cfg_command(s->cfg.dev), 0);
	}
	return 0;
}

static uint32_t cfg_u32(struct wkr_server *s, uint32_t off, size_t len)
{
	uint8_t b[4] = {0};

	if (wkr_cfg_read(s->cfg.dev, off, b, len) < 0)
		return 0;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int h_device_info(struct wkr_server *s, struct ipc_msg *m)
{
	Vb__Dev__DeviceInfo rep = VB__DEV__DEVICE_INFO__INIT;
	const struct wkr_devinfo *in = wkr_dev_info(s->cfg.dev);

	rep.bdf = (char *)in->bdf;
	rep.flags = in->flags;
	rep.num_regions = WKR_NUM_REGIONS;
	rep.num_irqs = WKR_NUM_IRQS;
	rep.vendor_id = cfg_u32(s, PCI_VENDOR_ID, 2);
	rep.device_id = cfg_u32(s, PCI_DEVICE_ID, 2);
	rep.subsystem_vendor_id = cfg_u32(s, PCI_SUBSYSTEM_VENDOR_ID, 2);
	rep.subsystem_id = cfg_u32(s, PCI_SUBSYSTEM_ID, 2);
	rep.class_code = cfg_u32(s, PCI_CLASS_PROG, 3);
	return reply(s, m, &rep.base, NULL, 0);
}

static int h_region_info(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__RegionInfoRequest *req = (const Vb__Dev__RegionInfoRequest *)m->body;
	Vb__Region rep = VB__REGION__INIT;
	struct wkr_mmap_area areas[WKR_MMAP_AREAS_MAX];
	Vb__MmapArea pa[WKR_MMAP_AREAS_MAX], *ppa[WKR_MMAP_AREAS_MAX];
	size_t n = 0;
	int e = wkr_vmm_mmap_areas(s->cfg.dev, req->index, s->cfg.allow_mmap, s->sv->grant_fd,
				   areas, &n, &s->err);
	const struct wkr_region *r;

	if (e < 0)
		return e;
	r = &wkr_dev_info(s->cfg.dev)->regions[req->index];
	rep.index = req->index;
	rep.flags = r->flags;
	rep.size = r->size;
	rep.offset = r->offset;
	rep.msix_mappable = r->msix_mappable;
	if (n == 0) {
		rep.flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_MMAP;
		return reply(s, m, &rep.base, NULL, 0);
	}
	for (size_t i = 0; i < n; i++) {
		vb__mmap_area__init(&pa[i]);
		pa[i].offset = areas[i].offset;
		pa[i].size = areas[i].size;
		ppa[i] = &pa[i];
	}
	rep.mmap_areas = ppa;
	rep.n_mmap_areas = n;
	return reply(s, m, &rep.base, &s->sv->grant_fd, 1);
}

static int h_irq_info(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__IrqInfoRequest *req = (const Vb__Dev__IrqInfoRequest *)m->body;
	Vb__Irq rep = VB__IRQ__INIT;
	const struct wkr_irq_info *q;

	if (req->index >= WKR_NUM_IRQS)
		return fail(s, -EINVAL, "IRQ index %u: the device has %d", req->index,
			    WKR_NUM_IRQS);
	q = &wkr_dev_info(s->cfg.dev)->irqs[req->index];
	rep.index = req->index;
	rep.flags = q->flags;
	rep.count = q->count;
	return reply(s, m, &rep.base, NULL, 0);
}

static int data_reply(struct wkr_server *s, struct ipc_msg *m, uint8_t *buf, size_t len)
{
	Vb__Dev__Data rep = VB__DEV__DATA__INIT;

	rep.data.data = buf;
	rep.data.len = len;
	return reply(s, m, &rep.base, NULL, 0);
}

static int access_error(struct wkr_server *s, int e, const char *what, uint32_t index, uint64_t off,
			size_t len)
{
	const char *why = e == -EINVAL	 ? "outside the region or a bad size"
			  : e == -ENOENT ? "the region does not exist"
			  : e == -EACCES ? "the region does not allow it"
			  : e == -EIO	 ? "the device did not answer"
					 : strerror(-e);

	return fail(s, e, "%s of %zu bytes at %#llx of region %u: %s", what, len,
		    (unsigned long long)off, index, why);
}

static int h_cfg_read(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__CfgRead *req = (const Vb__Dev__CfgRead *)m->body;
	uint8_t buf[WKR_ACCESS_MAX];
	int e;

	if (req->size == 0 || req->size > WKR_ACCESS_MAX)
		return fail(s, -EINVAL, "config read of %u bytes (1 to %d)", req->size,
			    WKR_ACCESS_MAX);
	e = wkr_cfg_read(s->cfg.dev, req->offset, buf, req->size);
	if (e < 0)
		return access_error(s, e, "config read", VFIO_PCI_CONFIG_REGION_INDEX, req->offset,
				    req->size);
	return data_reply(s, m, buf, req->size);
}

/* The device was reset (RESET, or an FLR the guest initiated): the VMM hears it with Command and
 * the BARs as they are now, before the reply. */
static int reset_answer(struct wkr_server *s, struct ipc_msg *m)
{
	(void)wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_RESET, wkr_cfg_command(s->cfg.dev),
				0);
	return reply_empty(s, m);
}

static int reset_emulation(struct wkr_server *s, struct ipc_msg *m)
{
	int e = wkr_vmm_reset_emulation(s->cfg.dev, &s->err);

	return e < 0 ? e : then(s, reset_answer);
}

/* The device first; the emulation follows once the backend has reset it. */
static int reset_device(struct wkr_server *s)
{
	int e = wkr_vmm_reset_device(&s->cfg.backend, &s->err);

	return e < 0 ? e : then(s, reset_emulation);
}

/* After a config or BAR write: an FLR it initiated resets the device before the VMM is
 * answered; otherwise the answer waits only for the routing the write changed. */
static int after_write(struct wkr_server *s)
{
	return wkr_dev_take_flr(s->cfg.dev) ? reset_device(s) : then(s, reply_empty);
}

static int h_cfg_write(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__CfgWrite *req = (const Vb__Dev__CfgWrite *)m->body;
	int e;

	if (req->data.len == 0 || req->data.len > WKR_ACCESS_MAX)
		return fail(s, -EINVAL, "config write of %zu bytes (1 to %d)", req->data.len,
			    WKR_ACCESS_MAX);
	e = wkr_cfg_write(s->cfg.dev, req->offset, req->data.data, req->data.len);
	if (e == -EINVAL || e == -EIO) {
		(void)wkr_dev_take_flr(s->cfg.dev);
		return access_error(s, e, "config write", VFIO_PCI_CONFIG_REGION_INDEX, req->offset,
				    req->data.len);
	}
	if (e < 0) {
		(void)wkr_dev_take_flr(s->cfg.dev);
		return fail(s, e,
			    "config write at %#x: the broker refused the interrupt change: %s",
			    req->offset, strerror(-e));
	}
	return after_write(s);
}

static int h_region_read(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__RegionRead *req = (const Vb__Dev__RegionRead *)m->body;
	uint8_t buf[WKR_ACCESS_MAX];
	int e;

	if (req->size == 0 || req->size > WKR_ACCESS_MAX)
		return fail(s, -EINVAL, "region read of %u bytes (1 to %d)", req->size,
			    WKR_ACCESS_MAX);
	e = wkr_region_read(s->cfg.dev, req->index, req->offset, buf, req->size);
	if (e < 0)
		return access_error(s, e, "read", req->index, req->offset, req->size);
	return data_reply(s, m, buf, req->size);
}

static int h_region_write(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__RegionWrite *req = (const Vb__Dev__RegionWrite *)m->body;
	int e;

	if (req->data.len == 0 || req->data.len > WKR_ACCESS_MAX)
		return fail(s, -EINVAL, "region write of %zu bytes (1 to %d)", req->data.len,
			    WKR_ACCESS_MAX);
	e = wkr_region_write(s->cfg.dev, req->index, req->offset, req->data.data, req->data.len);
	if (e < 0) {
		(void)wkr_dev_take_flr(s->cfg.dev);
		return access_error(s, e, "write", req->index, req->offset, req->data.len);
	}
	return after_write(s);
}

static int h_dma_map(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__DmaMap *req = (const Vb__DmaMap *)m->body;
	const uint32_t prot_ok =
	    VB__DEV__DMA_PROT__DMA_PROT_READ | VB__DEV__DMA_PROT__DMA_PROT_WRITE;
	int e;

	if (m->nfds != 1)
		return fail(s, -EINVAL, "DMA_MAP needs exactly one memfd, got %zu fds", m->nfds);
	if (req->prot == 0 || (req->prot & ~prot_ok))
		return fail(s, -EINVAL, "DMA protection %#x (read 1, write 2)", req->prot);
	e = wkr_vmm_dma_check(s->cfg.iommu_pgsize, req->iova, req->size, req->offset, &s->err);
	if (e < 0)
		return e;
	e = s->cfg.backend.ops->dma_map(s->cfg.backend.ctx, req->iova, req->size, req->offset,
					req->prot, m->fds[0], &s->err);
	return e < 0 ? e : then(s, reply_empty);
}

static int h_dma_unmap(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__DmaUnmap *req = (const Vb__DmaUnmap *)m->body;
	int e = wkr_vmm_dma_check(s->cfg.iommu_pgsize, req->iova, req->size, 0, &s->err);

	if (e < 0)
		return e;
	e = s->cfg.backend.ops->dma_unmap(s->cfg.backend.ctx, req->iova, req->size, &s->err);
	return e < 0 ? e : then(s, reply_empty);
}

static int h_set_irq_fds(struct wkr_server *s, struct ipc_msg *m)
{
	const Vb__Dev__SetIrqFds *req = (const Vb__Dev__SetIrqFds *)m->body;
	size_t want = (size_t)req->count + (req->resample ? 1 : 0);
	int e;

	if (req->index >= WKR_NUM_IRQS)
		return fail(s, -EINVAL, "IRQ index %u: the device has %d", req->index,
			    WKR_NUM_IRQS);
	if (req->resample && (req->index != VFIO_PCI_INTX_IRQ_INDEX || req->count != 1))
		return fail(s, -EINVAL, "a resample fd goes with exactly one INTx trigger fd");
	if (m->nfds != want)
		return fail(s, -EINVAL, "SET_IRQ_FDS for %u vectors%s carries %zu fds", req->count,
			    req->resample ? " and a resample fd" : "", m->nfds);
	e = wkr_irq_set_fds(s->cfg.dev, req->index, req->start, req->count, m->fds,
			    req->resample ? m->fds[req->count] : -1);
	if (e == -EINVAL || e == -ENOENT)
		return fail(s, e, "IRQ index %u has %u vectors; %u from %u do not fit", req->index,
			    wkr_dev_info(s->cfg.dev)->irqs[req->index].count, req->count,
			    req->start);
	if (e < 0)
		return fail(s, e, "routing IRQ index %u failed: %s", req->index, strerror(-e));
	return then(s, reply_empty);
}

static int h_reset(struct wkr_server *s, struct ipc_msg *m)
{
	return reset_device(s);
}

static int h_removal_ack(struct wkr_server *s, struct ipc_msg *m)
{
	/* Answer the VMM before the broker hears of it: once told, the broker ends this worker,
	 * and the VMM must already have its reply in its socket by then, not a hang-up. */
	int r = reply_empty(s, m);

	wkr_serve_removal_finish(s->sv, true);
	return r;
}

/* Session states, as bits for the table: HELLO first, then everything. */
#define BEFORE_HELLO 1u
#define AFTER_HELLO  2u

static const struct {
	struct vb_req req;
	int (*fn)(struct wkr_server *s, struct ipc_msg *m);
} handlers[] = {
    {{VB__DEV__TYPE__HELLO, BEFORE_HELLO | AFTER_HELLO, "hello"}, h_hello},
    {{VB__DEV__TYPE__DEVICE_INFO, AFTER_HELLO, "device_info"}, h_device_info},
    {{VB__DEV__TYPE__REGION_INFO, AFTER_HELLO, "region_info"}, h_region_info},
    {{VB__DEV__TYPE__IRQ_INFO, AFTER_HELLO, "irq_info"}, h_irq_info},
    {{VB__DEV__TYPE__CFG_READ, AFTER_HELLO, "cfg_read"}, h_cfg_read},
    {{VB__DEV__TYPE__CFG_WRITE, AFTER_HELLO, "cfg_write"}, h_cfg_write},
    {{VB__DEV__TYPE__REGION_READ, AFTER_HELLO, "region_read"}, h_region_read},
    {{VB__DEV__TYPE__REGION_WRITE, AFTER_HELLO, "region_write"}, h_region_write},
    {{VB__DEV__TYPE__DMA_MAP, AFTER_HELLO, "dma_map"}, h_dma_map},
    {{VB__DEV__TYPE__DMA_UNMAP, AFTER_HELLO, "dma_unmap"}, h_dma_unmap},
    {{VB__DEV__TYPE__SET_IRQ_FDS, AFTER_HELLO, "set_irq_fds"}, h_set_irq_fds},
    {{VB__DEV__TYPE__RESET, AFTER_HELLO, "reset"}, h_reset},
    {{VB__DEV__TYPE__REMOVAL_ACK, AFTER_HELLO, "removal_ack"}, h_removal_ack},
};

/* Runs `fn` and the steps it chains with then() until one waits for the backend (the session
 * then pauses, and on_ready() goes on) or the last has answered; answers the first failure of
 * a step or a call instead. Takes `m`. */
static void proceed(struct wkr_server *s, struct ipc_msg *m,
		    int (*fn)(struct wkr_server *s, struct ipc_msg *m), bool fresh)
{
	struct wkr_session *v = wkr__server_session(s);
	struct wkr_defer *d = &v->base.defer;

	while (fn) {
		int r;

		v->then = NULL;
		s->err = (struct vb_err){0};
		wkr_defer_begin(d, &s->cfg.backend, fresh);
		fresh = false;
		r = fn(s, m);
		wkr_defer_fail(d, r, &s->err);
		if (wkr_defer_end(d)) {
			v->waiting = m;
			if (!wkr_serve_pause(&v->base, true) && !v->send_err)
				v->send_err = -EIO;
			return;
		}
		fn = d->err < 0 ? NULL : v->then;
	}
	if (d->err < 0)
		reply_error(s, m, d->err, vb_err_msg(&d->why, d->err));
	wkr__server_msg_done(s, m);
}

/* The backend's calls for the waiting request have completed: go on with it, then read the
 * VMM's next request. */
static void on_ready(struct wkr_defer *d)
{
	struct wkr_session *v = container_of(d, struct wkr_session, base.defer);
	struct wkr_server *s = v->s;
	struct ipc_msg *m = v->waiting;

	v->waiting = NULL;
	s->dispatching = true;
	proceed(s, m, d->err < 0 ? NULL : v->then, false);
	s->dispatching = false;
	if (!v->waiting && !wkr_serve_pause(&v->base, false) && !v->send_err)
		v->send_err = -EIO;
	if (!v->waiting)
		wkr_ring_kick(v->ring); /* a ring request held back meanwhile goes now */
	wkr__server_sent(s, 0);
}

void wkr__server_dispatch(struct wkr_server *s, struct ipc_msg *m)
{
	struct wkr_session *v = wkr__server_session(s);
	enum vb_req_check check;
	__typeof__(&handlers[0]) h;
	int r;

	s->err = (struct vb_err){0};
	v->base.defer.done = on_ready;
	h = VB_REQ_LOOKUP(handlers, m->type, s->hello_done ? AFTER_HELLO : BEFORE_HELLO, &check);
	if (check == VB_REQ_ALLOWED) {
		proceed(s, m, h->fn, true);
		return;
	}
	r = check == VB_REQ_NOT_NOW
		? fail(s, -EPROTO, "HELLO must come first")
		: fail(s, -EOPNOTSUPP, "request type %u is not one this worker serves", m->type);
	reply_error(s, m, r, s->err.msg);
	wkr__server_msg_done(s, m);
}
