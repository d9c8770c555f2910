/*
 * vfu_cmd: the vfio-user command table and its handlers. Each handler sees a payload whose
 * size the table has checked against the command's fixed part and fds no more than the command
 * takes; it checks every field before the device or the backend is touched. Accesses go through
 * the worker's emulation (wkr_region_*), the mmap rule, DMA checks and reset are those of the
 * native protocol (vmm_ops.c), interrupts are VFIO SET_IRQS semantics (wkr_irq_set_vfio) and
 * reach the broker through the same backend as the native protocol's.
 *
 * Replies never exceed what the client's request allowed for: QEMU reads the reply to VERSION,
 * DEVICE_GET_INFO and DEVICE_RESET into its request's own buffer, and REGION_INFO's into argsz.
 * A command with NO_REPLY (QEMU posts REGION_WRITE that way) gets nothing back, not even an
 * error: any byte would be read as the answer to the client's next request.
 *
 * A command that needs the backend (DMA, SET_IRQS, reset, a write that changes the interrupt
 * routing) is answered once the backend's calls have completed (defer.h): its handler does its
 * local part and chains the answering step with then(); the session reads no further command
 * meanwhile, so that the VMM's order is kept.
 *
 * Trusts: vfu_conn's framing. Distrusts every field and fd of the message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "vfu_internal.h"
#include "vmm_ops.h"

#define reply vfu_reply

__attribute__((format(printf, 3, 4))) static int fail(struct wkr_vfu *s, int err, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	s->err.code = err;
	vsnprintf(s->err.msg, sizeof(s->err.msg), fmt, ap);
	va_end(ap);
	return err;
}

static struct vfu_session *sess(struct wkr_vfu *s)
{
	return wkr__vfu_session(s);
}

/* Goes on with `next` once the calls this step made have completed without error. */
static int then(struct wkr_vfu *s, vfu_step_fn next)
{
	sess(s)->then = next;
	return 0;
}

/* The reply is what the handler built already (or nothing). */
static int answer(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	return 0;
}

static int reset_emulation(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	int e = wkr_vmm_reset_emulation(s->cfg.dev, &s->err);

	return e < 0 ? e : then(s, sess(s)->after_reset);
}

/* The device first; the emulation once the backend has reset it; then `next`. */
static int reset_device(struct wkr_vfu *s, vfu_step_fn next)
{
	int e = wkr_vmm_reset_device(&s->cfg.backend, &s->err);

	sess(s)->after_reset = next;
	return e < 0 ? e : then(s, reset_emulation);
}

/* Room for `len` reply bytes, zeroed. */
static uint8_t *room(struct reply *r, size_t len)
{
	r->buf = len <= sizeof(r->small) ? r->small : calloc(1, len);
	if (r->buf == r->small)
		memset(r->small, 0, sizeof(r->small));
	r->len = r->buf ? len : 0;
	return r->buf;
}

static int h_version(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	struct vfu_session *v = sess(s);
	int r;

	if (v->versioned)
		return fail(s, -EINVAL, "VERSION was already negotiated on this connection");
	/* The reply goes into the buffer of this request: never larger than it. */
	if (!room(rp, m->len))
		return -ENOMEM;
	r = wkr__vfu_version(s, m->data, m->len, &v->caps, rp->buf, m->len, &rp->len, &s->err);
	if (r == 0)
		v->versioned = true;
	return r;
}

static int argsz_check(struct wkr_vfu *s, const struct vfu_msg *m, const char *what, size_t min)
{
	uint32_t argsz = vfu_get32(m->data);

	if (argsz < min)
		return fail(s, -EINVAL, "%s: argsz %u, at least %zu", what, argsz, min);
	return 0;
}

static int h_device_info(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	const struct wkr_devinfo *in = wkr_dev_info(s->cfg.dev);
	int r = argsz_check(s, m, "DEVICE_GET_INFO", VFU_DEV_INFO_SIZE);
	uint8_t *p;

	if (r < 0)
		return r;
	p = room(rp, VFU_DEV_INFO_SIZE);
	if (!p)
		return -ENOMEM;
	vfu_put32(p, VFU_DEV_INFO_SIZE);
	vfu_put32(p + 4, in->flags & (VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI));
	vfu_put32(p + 8, WKR_NUM_REGIONS);
	vfu_put32(p + 12, WKR_NUM_IRQS);
	return 0;
}

static int h_region_info(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	struct wkr_mmap_area areas[WKR_MMAP_AREAS_MAX];
	size_t n = 0;
	uint32_t argsz = vfu_get32(m->data), index = vfu_get32(m->data + 8);
	int r = argsz_check(s, m, "DEVICE_GET_REGION_INFO", VFU_REGION_INFO_SIZE);
	const struct wkr_region *reg;
	uint32_t flags;
	size_t cap_len;
	size_t need;
	bool full;
	uint8_t *p;
	uint8_t *c;

	if (r == 0)
		r = wkr_vmm_mmap_areas(s->cfg.dev, index, s->cfg.allow_mmap, s->sv->grant_fd, areas,
				       &n, &s->err);
	if (r < 0)
		return r;
	reg = &wkr_dev_info(s->cfg.dev)->regions[index];
	flags = reg->flags & ~(uint32_t)(VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
	/* A client that takes no fd cannot map: it is told the region is not mappable. */
	if (sess(s)->caps.client_max_fds == 0)
		n = 0;
	cap_len = n ? VFU_CAP_SPARSE_HDR + n * VFU_CAP_SPARSE_AREA : 0;
	need = VFU_REGION_INFO_SIZE + cap_len;
	full = argsz >= need;
	p = room(rp, full ? need : VFU_REGION_INFO_SIZE);
	if (!p)
		return -ENOMEM;
	if (n)
		flags |= VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
	vfu_put32(p, (uint32_t)need);
	vfu_put32(p + 4, flags);
	vfu_put32(p + 8, index);
	/* cap_offset even when the capability does not fit: QEMU's client checks it against the
	 * argsz we announce (sizeof(info) <= cap_offset <= argsz) before it asks again, and fails
	 * the device's realize on a 0 (kernel vfio-pci reports 0 there; libvfio-user does not). */
	vfu_put32(p + 12, n ? VFU_REGION_INFO_SIZE : 0);
	vfu_put64(p + 16, reg->size);
	vfu_put64(p + 24, reg->offset);
	if (!n || !full)
		return 0; /* the client asks again with argsz = need, and gets the fd then */
	c = p + VFU_REGION_INFO_SIZE;
	vfu_put16(c, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	vfu_put16(c + 2, 1);
	vfu_put32(c + 4, 0);
	vfu_put32(c + 8, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		vfu_put64(c + VFU_CAP_SPARSE_HDR + i * 16, areas[i].offset);
		vfu_put64(c + VFU_CAP_SPARSE_HDR + i * 16 + 8, areas[i].size);
	}
	rp->fd = s->sv->grant_fd;
	return 0;
}

static int h_irq_info(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	uint32_t index = vfu_get32(m->data + 8);
	int r = argsz_check(s, m, "DEVICE_GET_IRQ_INFO", VFU_IRQ_INFO_SIZE);
	const struct wkr_irq_info *q;
	uint8_t *p;

	if (r < 0)
		return r;
	if (index >= WKR_NUM_IRQS)
		return fail(s, -EINVAL, "IRQ index %u: the device has %d", index, WKR_NUM_IRQS);
	q = &wkr_dev_info(s->cfg.dev)->irqs[index];
	p = room(rp, VFU_IRQ_INFO_SIZE);
	if (!p)
		return -ENOMEM;
	vfu_put32(p, VFU_IRQ_INFO_SIZE);
	vfu_put32(p + 4, q->flags);
	vfu_put32(p + 8, index);
	vfu_put32(p + 12, q->count);
	return 0;
}

static int h_set_irqs(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	uint32_t flags = vfu_get32(m->data + 4), index = vfu_get32(m->data + 8);
	uint32_t start = vfu_get32(m->data + 12), count = vfu_get32(m->data + 16);
	uint32_t data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	size_t extra = m->len - VFU_SET_IRQS_SIZE;
	int r = argsz_check(s, m, "DEVICE_SET_IRQS", VFU_SET_IRQS_SIZE);

	if (r < 0)
		return r;
	/* The data bytes are the BOOL array, or nothing (a kernel-style inline fd array is
	 * tolerated and ignored: the fds travel as SCM_RIGHTS). */
	if (!(extra == 0 || (data == VFIO_IRQ_SET_DATA_BOOL && extra == count) ||
	      (data == VFIO_IRQ_SET_DATA_EVENTFD && extra == (size_t)count * 4)))
		return fail(s, -EINVAL, "DEVICE_SET_IRQS with %zu data bytes for %u vectors", extra,
			    count);
	if (data == VFIO_IRQ_SET_DATA_BOOL && extra != count)
		return fail(s, -EINVAL, "DEVICE_SET_IRQS with DATA_BOOL needs %u bytes", count);
	if (m->nfds && data != VFIO_IRQ_SET_DATA_EVENTFD)
		return fail(s, -EINVAL, "DEVICE_SET_IRQS without DATA_EVENTFD carries %zu fds",
			    m->nfds);
	/* All of the chunk's eventfds, or none: a chunk of -1s de-assigns (fds cannot be -1
	 * on the wire). */
	if (m->nfds && m->nfds != count)
		return fail(s, -EINVAL, "DEVICE_SET_IRQS for %u vectors carries %zu fds", count,
			    m->nfds);
	r = wkr_irq_set_vfio(s->cfg.dev, index, flags, start, count, m->nfds ? m->fds : NULL,
			     data == VFIO_IRQ_SET_DATA_BOOL ? m->data + VFU_SET_IRQS_SIZE : NULL);
	if (r == -EINVAL || r == -ENOENT)
		return fail(s, -EINVAL,
			    "DEVICE_SET_IRQS flags %#x index %u start %u count %u: not a request "
			    "this device's index takes",
			    flags, index, start, count);
	if (r < 0)
		return fail(s, r, "DEVICE_SET_IRQS index %u: routing failed: %s", index,
			    strerror(-r));
	return then(s, answer);
}

static const char *access_why(int e)
{
	return e == -EINVAL   ? "outside the region or a bad size"
	       : e == -ENOENT ? "the region does not exist"
	       : e == -EACCES ? "the region does not allow it"
	       : e == -EIO    ? "the device did not answer"
			      : strerror(-e);
}

static int rw_check(struct wkr_vfu *s, bool wr, uint64_t off, uint32_t count)
{
	if (count == 0 || count > WKR_VFU_MAX_DATA_XFER)
		return fail(s, -EINVAL, "region %s of %u bytes (1 to max_data_xfer_size %u)",
			    wr ? "write" : "read", count, WKR_VFU_MAX_DATA_XFER);
	if (off + count < off)
		return fail(s, -EINVAL, "region access at %#llx wraps", (unsigned long long)off);
	return 0;
}

static int rw_error(struct wkr_vfu *s, bool wr, uint32_t index, uint64_t off, uint32_t count, int e)
{
	return fail(s, e == -ENOENT ? -EINVAL : e, "%s of %u bytes at %#llx of region %u: %s",
		    wr ? "write" : "read", count, (unsigned long long)off, index, access_why(e));
}

static int h_region_read(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	uint64_t off = vfu_get64(m->data);
	uint32_t index = vfu_get32(m->data + 8), count = vfu_get32(m->data + 12);
	int r;
	uint8_t *p;

	if (m->len != VFU_RW_SIZE)
		return fail(s, -EINVAL, "REGION_READ of %zu bytes: exactly %d", m->len,
			    VFU_RW_SIZE);
	r = rw_check(s, false, off, count);
	if (r < 0)
		return r;
	p = room(rp, VFU_RW_SIZE + (size_t)count);
	if (!p)
		return -ENOMEM;
	memcpy(p, m->data, VFU_RW_SIZE);
	/* In pieces the emulation accepts, each checked by it. */
	for (uint32_t done = 0; done < count;) {
		uint32_t n = count - done < WKR_ACCESS_MAX ? count - done : WKR_ACCESS_MAX;
		int e = wkr_region_read(s->cfg.dev, index, off + done, p + VFU_RW_SIZE + done, n);

		if (e < 0)
			return rw_error(s, false, index, off, count, e);
		done += n;
	}
	return 0;
}

/* REGION_WRITE from where it got (sess(s)->written), in pieces the emulation accepts; a piece
 * that initiated an FLR resets the device, as the kernel would, before the next is written. */
static int region_write_on(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	struct vfu_session *v = sess(s);
	uint64_t off = vfu_get64(m->data);
	uint32_t index = vfu_get32(m->data + 8), count = vfu_get32(m->data + 12);
	uint8_t *p;

	while (v->written < count) {
		uint32_t n =
		    count - v->written < WKR_ACCESS_MAX ? count - v->written : WKR_ACCESS_MAX;
		int e = wkr_region_write(s->cfg.dev, index, off + v->written,
					 m->data + VFU_RW_SIZE + v->written, n);
		bool flr = wkr_dev_take_flr(s->cfg.dev);

		if (e < 0)
			return rw_error(s, true, index, off, count, e);
		v->written += n;
		if (flr)
			return reset_device(s, region_write_on);
	}
	p = room(rp, VFU_RW_SIZE);
	if (!p)
		return -ENOMEM;
	memcpy(p, m->data, VFU_RW_SIZE);
	/* The answer waits for the routing the write changed. */
	return then(s, answer);
}

static int h_region_write(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	uint64_t off = vfu_get64(m->data);
	uint32_t count = vfu_get32(m->data + 12);
	int r;

	if (m->len - VFU_RW_SIZE != count)
		return fail(s, -EINVAL, "REGION_WRITE of %u bytes carries %zu", count,
			    m->len - VFU_RW_SIZE);
	r = rw_check(s, true, off, count);
	if (r < 0)
		return r;
	sess(s)->written = 0;
	return region_write_on(s, m, rp);
}

/* The backend has mapped it: the session's list has room (reserved before the call). */
static int dma_mapped(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	return wkr_held_add(&sess(s)->maps, vfu_get64(m->data + 16), vfu_get64(m->data + 24));
}

static int h_dma_map(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	struct vfu_session *v = sess(s);
	uint32_t flags = vfu_get32(m->data + 4);
	uint64_t offset = vfu_get64(m->data + 8), iova = vfu_get64(m->data + 16);
	uint64_t size = vfu_get64(m->data + 24);
	const uint32_t ok = VFU_DMA_READ_FLAG | VFU_DMA_WRITE_FLAG;
	int r = argsz_check(s, m, "DMA_MAP", VFU_DMA_MAP_SIZE);

	if (r < 0)
		return r;
	if (m->nfds == 0)
		return fail(s, -ENOTSUP,
			    "DMA_MAP of iova %#llx without an fd: this worker does not do "
			    "message-based DMA (DMA_READ/DMA_WRITE); give the VMM shared, "
			    "memfd-backed guest RAM (QEMU: -object memory-backend-memfd,share=on)",
			    (unsigned long long)iova);
	if (flags == 0 || (flags & ~ok))
		return fail(s, -EINVAL, "DMA_MAP flags %#x (read 1, write 2)", flags);
	r = wkr_vmm_dma_check((uint32_t)v->caps.pgsize, iova, size, offset, &s->err);
	if (r < 0)
		return r;
	if (wkr_held_overlaps(&v->maps, iova, size))
		return fail(s, -EEXIST, "DMA_MAP of iova %#llx size %#llx overlaps a mapping",
			    (unsigned long long)iova, (unsigned long long)size);
	if (v->maps.n >= v->caps.max_dma_maps)
		return fail(s, -ENOSPC, "DMA_MAP: max_dma_maps (%u) mappings already",
			    v->caps.max_dma_maps);
	if (wkr_held_reserve(&v->maps) < 0)
		return -ENOMEM;
	/* The VFIO protection bits are the vfio-user ones: read 1, write 2. */
	r = s->cfg.backend.ops->dma_map(s->cfg.backend.ctx, iova, size, offset, flags, m->fds[0],
					&s->err);
	return r < 0 ? r : then(s, dma_mapped);
}

void wkr__vfu_unmap_all(struct wkr_vfu *s)
{
	struct vfu_session *v = sess(s);

	(void)s->cfg.backend.ops->dma_unmap_all(s->cfg.backend.ctx);
	if (v)
		wkr_held_clear(&v->maps);
}

/* Unmaps the mappings that [iova, iova+size) covers; one it only cuts is refused first. A range
 * the session holds nothing in goes to the backend all the same, which answers as it does for
 * the native protocol: ENOENT for a range never mapped, and done for the VMM's retry of an
 * unmap that timed out (a broker read it and was killed before it answered, having unmapped;
 * broker_ops.c), which the session forgot when it was sent. */
static int unmap_range(struct wkr_vfu *s, uint64_t iova, uint64_t size)
{
	struct wkr_held *h = &sess(s)->maps;
	size_t first, n = wkr_held_span(h, iova, size, &first);

	if (!n)
		return s->cfg.backend.ops->dma_unmap(s->cfg.backend.ctx, iova, size, &s->err);
	/* Only the first and the last can stick out of the range: the ones between lie inside. */
	for (size_t i = first; i<first + n; i += n> 1 ? n - 1 : 1) {
		const struct wkr_held_range *a = &h->r[i];

		if (a->iova < iova || a->iova + a->size > iova + size)
			return fail(s, -EINVAL,
				    "DMA_UNMAP of iova %#llx size %#llx would cut the mapping at "
				    "%#llx",
				    (unsigned long long)iova, (unsigned long long)size,
				    (unsigned long long)a->iova);
	}
	/* From the last down, so each one removed leaves the indexes below it in place. */
	while (n--) {
		struct wkr_held_range a = h->r[first + n];
		int r = s->cfg.backend.ops->dma_unmap(s->cfg.backend.ctx, a.iova, a.size, &s->err);

		if (r < 0)
			return r;
		wkr_held_remove(h, a.iova, a.size);
	}
	return 0;
}

static int h_dma_unmap(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	uint32_t flags = vfu_get32(m->data + 4);
	uint64_t iova = vfu_get64(m->data + 8), size = vfu_get64(m->data + 16);
	int r = argsz_check(s, m, "DMA_UNMAP", VFU_DMA_UNMAP_SIZE);
	uint8_t *p;

	if (r < 0)
		return r;
	if (flags & VFU_UNMAP_DIRTY_BITMAP)
		return fail(s, -ENOTSUP, "DMA_UNMAP: dirty page tracking is not supported");
	if (flags & ~VFU_UNMAP_ALL)
		return fail(s, -EINVAL, "DMA_UNMAP flags %#x", flags);
	if (flags & VFU_UNMAP_ALL) {
		if (iova || size)
			return fail(s, -EINVAL,
				    "DMA_UNMAP of all mappings takes address and size 0");
		wkr__vfu_unmap_all(s);
	} else {
		r = wkr_vmm_dma_check((uint32_t)sess(s)->caps.pgsize, iova, size, 0, &s->err);
		if (r == 0)
			r = unmap_range(s, iova, size);
		if (r < 0)
			return r;
	}
	/* The reply is the request's entry, once the backend has unmapped. */
	p = room(rp, VFU_DMA_UNMAP_SIZE);
	if (!p)
		return -ENOMEM;
	memcpy(p, m->data, VFU_DMA_UNMAP_SIZE);
	return then(s, answer);
}

static int h_reset(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	if (m->len)
		return fail(s, -EINVAL, "DEVICE_RESET carries no payload, got %zu bytes", m->len);
	return reset_device(s, answer);
}

/* Session states, as bits for the table: VERSION first, then everything. */
#define BEFORE_VERSION 1u
#define AFTER_VERSION  2u

static const struct {
	struct vb_req req;
	size_t min_len;	  /* fixed part of the payload */
	uint32_t max_fds; /* fds the command may carry */
	int (*fn)(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp);
} cmds[] = {
    {{VFU_CMD_VERSION, BEFORE_VERSION | AFTER_VERSION, "VERSION"}, VFU_VERSION_SIZE, 0, h_version},
    {{VFU_CMD_DMA_MAP, AFTER_VERSION, "DMA_MAP"}, VFU_DMA_MAP_SIZE, 1, h_dma_map},
    {{VFU_CMD_DMA_UNMAP, AFTER_VERSION, "DMA_UNMAP"}, VFU_DMA_UNMAP_SIZE, 0, h_dma_unmap},
    {{VFU_CMD_DEVICE_GET_INFO, AFTER_VERSION, "DEVICE_GET_INFO"},
     VFU_DEV_INFO_SIZE,
     0,
     h_device_info},
    {{VFU_CMD_DEVICE_GET_REGION_INFO, AFTER_VERSION, "DEVICE_GET_REGION_INFO"},
     VFU_REGION_INFO_SIZE,
     0,
     h_region_info},
    {{VFU_CMD_DEVICE_GET_IRQ_INFO, AFTER_VERSION, "DEVICE_GET_IRQ_INFO"},
     VFU_IRQ_INFO_SIZE,
     0,
     h_irq_info},
    {{VFU_CMD_DEVICE_SET_IRQS, AFTER_VERSION, "DEVICE_SET_IRQS"},
     VFU_SET_IRQS_SIZE,
     WKR_VFU_MAX_IRQ_FDS,
     h_set_irqs},
    {{VFU_CMD_REGION_READ, AFTER_VERSION, "REGION_READ"}, VFU_RW_SIZE, 0, h_region_read},
    {{VFU_CMD_REGION_WRITE, AFTER_VERSION, "REGION_WRITE"}, VFU_RW_SIZE, 0, h_region_write},
    {{VFU_CMD_DEVICE_RESET, AFTER_VERSION, "DEVICE_RESET"}, 0, 0, h_reset},
};

/* Checks what the table knows, then runs the handler. */
static int run(struct wkr_vfu *s, struct vfu_msg *m, struct reply *rp)
{
	enum vb_req_check check;
	__typeof__(&cmds[0]) c;

	if (m->damage)
		return fail(s, m->damage, "command %u: its fds were %s", m->cmd,
			    m->damage == -EBADMSG ? "truncated" : "more than any command takes");
	if ((m->flags & ~VFU_F_KNOWN) || (m->flags & VFU_F_ERROR))
		return fail(s, -EINVAL, "command %u: flags %#x", m->cmd, m->flags);
	c = VB_REQ_LOOKUP(cmds, m->cmd, sess(s)->versioned ? AFTER_VERSION : BEFORE_VERSION,
			  &check);
	if (check == VB_REQ_UNKNOWN)
		return fail(s, -EOPNOTSUPP, "command %u is not one this server takes", m->cmd);
	if (check == VB_REQ_NOT_NOW)
		return fail(s, -EINVAL, "%s before VERSION", c->req.name);
	if (m->len < c->min_len)
		return fail(s, -EINVAL, "%s of %zu bytes: at least %zu", c->req.name, m->len,
			    c->min_len);
	if (m->nfds > c->max_fds)
		return fail(s, -EINVAL, "%s carries %zu fds: it takes at most %u", c->req.name,
			    m->nfds, c->max_fds);
	return c->fn(s, m, rp);
}

static void note(struct wkr_vfu *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct wkr_vfu *s, const char *fmt, ...)
{
	char line[VB_ERR_MAX + 64];
	va_list ap;

	if (!s->cfg.note || sess(s)->notes++ >= VFU_NOTES_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->cfg.note(s->cfg.note_data, line);
}

/* Sends the answer of `m` (an error reply with `err` < 0; nothing for NO_REPLY). */
static int finish(struct wkr_vfu *s, struct vfu_msg *m, int err, const struct vb_err *why)
{
	struct vfu_session *v = sess(s);
	struct reply *rp = &v->rp;
	int r = 0;

	if (err < 0)
		note(s, "vfio-user: command %u id %u: %s", m->cmd, m->id, vb_err_msg(why, err));
	if (!(m->flags & VFU_F_NO_REPLY))
		r = vfu_conn_reply(v->conn, m, err < 0 ? err : 0, rp->buf, rp->len, &rp->fd,
				   rp->fd >= 0 ? 1 : 0);
	if (rp->buf != rp->small)
		free(rp->buf);
	*rp = (struct reply){.fd = -1};
	return r == -EAGAIN ? 0 : r;
}

/* Runs `fn` and the steps it chains with then() until one waits for the backend or the last
 * has answered; answers the first failure of a step or a call instead. */
static int proceed(struct wkr_vfu *s, struct vfu_msg *m, vfu_step_fn fn, bool fresh)
{
	struct vfu_session *v = sess(s);
	struct wkr_defer *d = &v->base.defer;

	while (fn) {
		v->then = NULL;
		s->err = (struct vb_err){0};
		wkr_defer_begin(d, &s->cfg.backend, fresh);
		fresh = false;
		wkr_defer_fail(d, fn(s, m, &v->rp), &s->err);
		/* Handlers keep dups of what they keep: the message's fds are closed before the
		 * reply leaves, so that a client seeing the reply sees the worker without them. */
		for (size_t i = 0; i < m->nfds; i++)
			close(m->fds[i]);
		m->nfds = 0;
		if (wkr_defer_end(d)) {
			v->waiting = m;
			return wkr_serve_pause(&v->base, true) ? WKR_VFU_WAITING : -EIO;
		}
		fn = d->err < 0 ? NULL : v->then;
	}
	return finish(s, m, d->err, &d->why);
}

/* The backend's calls for the waiting command have completed: go on with it, then read the
 * VMM's next command. */
static void on_ready(struct wkr_defer *d)
{
	struct vfu_session *v = container_of(d, struct vfu_session, base.defer);
	struct wkr_vfu *s = v->s;
	struct vfu_msg *m = v->waiting;
	int r;

	v->waiting = NULL;
	r = proceed(s, m, d->err < 0 ? NULL : v->then, false);
	if (r == WKR_VFU_WAITING)
		return;
	if (v->waiting != m)
		vfu_msg_free(m);
	if (r == -ENOBUFS)
		note(s, "vfio-user: the VMM does not read its replies (over its budget): the "
			"session ends");
	if (r < 0 || !wkr_serve_pause(&v->base, false) ||
	    !wkr_serve_watch(&v->base, vfu_conn_pending(v->conn)))
		wkr_serve_end(s->sv);
}

void wkr__vfu_session_release(struct vfu_session *v)
{
	vfu_msg_free(v->waiting);
	v->waiting = NULL;
	if (v->rp.buf != v->rp.small)
		free(v->rp.buf);
	v->rp = (struct reply){.fd = -1};
}

int wkr__vfu_dispatch(struct wkr_vfu *s, struct vfu_msg *m)
{
	struct vfu_session *v = sess(s);

	if ((m->flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_CMD) {
		/* This server sends no commands: a reply answers nothing. */
		note(s, "vfio-user: dropped a message of type %u (command %u) from the VMM",
		     m->flags & VFU_F_TYPE_MASK, m->cmd);
		return 0;
	}
	v->rp = (struct reply){.fd = -1};
	v->base.defer.done = on_ready;
	return proceed(s, m, run, true);
}