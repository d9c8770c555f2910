/*
 * dev: the VMM side of the device protocol: connecting and the Hello handshake, device, region
 * and IRQ information, and the worker's events.
 *
 * Trusts the worker for nothing it can check: the protocol version, string lengths, the number
 * of mappable areas and their bounds within the region are verified before anything is handed
 * to the caller, and an fd that came with a rejected answer is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "device.pb-c.h"

#include "base.h"
#include "dev.h"
#include "ipc_ring.h"

/* Names the VMM in the worker's logs; longer names are cut. */
#define CLIENT_NAME_MAX 63

size_t vfb__dev_chunk(const struct vfb_dev *dev)
{
	size_t lim = ipc_limits_default.max_datagram;

	if (dev->peer.max_message_bytes && dev->peer.max_message_bytes < lim)
		lim = dev->peer.max_message_bytes;
	/* Room for the header and the protobuf framing around the bytes (a few varints). */
	lim = lim > IPC_HDR_SIZE + 64 ? lim - IPC_HDR_SIZE - 64 : 8;
	/* The worker moves at most ACCESS_MAX bytes per access, whatever fits a message. */
	if (lim > VB__DEV__LIMIT__ACCESS_MAX)
		lim = VB__DEV__LIMIT__ACCESS_MAX;
	return lim & ~(size_t)7;
}

static void limits_from_pb(const Vb__Limits *l, struct vfb_limits *out)
{
	memset(out, 0, sizeof(*out));
	if (!l)
		return;
	out->max_message_bytes = l->max_message_bytes;
	out->max_fds = l->max_fds;
	out->max_dma_mappings = l->max_dma_mappings;
	out->max_pinned_bytes = l->max_pinned_bytes;
	out->max_outstanding = l->max_outstanding;
}

/* What the worker said of the ring offered in the HELLO (`ans` NULL: nothing, an older worker). */
static void ring_answer(struct vfb_dev *dev, const Vb__Dev__RingAnswer *ans)
{
	if (ans && ans->accepted) {
		dev->ring_on = true;
		dev->ring_why[0] = '\0';
		return;
	}
	if (ans)
		snprintf(dev->ring_why, sizeof(dev->ring_why), "the worker declined the ring: %s",
			 ans->reason && *ans->reason ? ans->reason : strerror((int)ans->error));
	else
		snprintf(dev->ring_why, sizeof(dev->ring_why),
			 "the worker does not know rings (an older worker)");
	vfb__ring_fini(&dev->ring);
}

/* How long a worker waits for the broker to admit a VMM before it refuses it with ETIMEDOUT
 * (its call timeout, 30 s: long enough for a broker restart); the HELLO waits that long beyond
 * the handle's timeout, so that it gets the worker's answer rather than giving up first. */
#define HELLO_ADMIT_MS 30000

/* The HELLO, with a ring offered unless `no_ring`. */
static int hello_call(struct vfb_dev *dev, Vb__Dev__Hello *req, bool no_ring, struct ipc_msg **ret)
{
	Vb__Dev__RingOffer offer = VB__DEV__RING_OFFER__INIT;
	_cleanup_close_ int memfd = -1;
	int fds[2], r;

	if (no_ring)
		return vfb__conn_call(&dev->conn, VB__DEV__TYPE__HELLO, &req->base, NULL, 0,
				      HELLO_ADMIT_MS, ret);
	r = vfb__ring_make(&dev->ring, &memfd);
	if (r < 0) {
		snprintf(dev->ring_why, sizeof(dev->ring_why), "making the ring failed: %s",
			 strerror(-r));
		return vfb__conn_call(&dev->conn, VB__DEV__TYPE__HELLO, &req->base, NULL, 0,
				      HELLO_ADMIT_MS, ret);
	}
	offer.layout = VB_RING_LAYOUT;
	req->ring = &offer;
	fds[0] = memfd;
	fds[1] = dev->ring.doorbell;
	r = vfb__conn_call(&dev->conn, VB__DEV__TYPE__HELLO, &req->base, fds, 2, HELLO_ADMIT_MS,
			   ret);
	req->ring = NULL;
	if (r != -ETOOMANYREFS)
		return r;
	/* A worker older than rings refuses a HELLO with fds: say hello again without. */
	vfb__ring_fini(&dev->ring);
	snprintf(dev->ring_why, sizeof(dev->ring_why),
		 "the worker does not know rings (an older worker)");
	return vfb__conn_call(&dev->conn, VB__DEV__TYPE__HELLO, &req->base, NULL, 0, HELLO_ADMIT_MS,
			      ret);
}

static int hello(struct vfb_dev *dev, const char *client_name, bool no_ring)
{
	char name[CLIENT_NAME_MAX + 1];
	Vb__Limits lim = VB__LIMITS__INIT;
	Vb__Dev__Hello req = VB__DEV__HELLO__INIT;
	const Vb__Dev__HelloReply *rep;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	snprintf(name, sizeof(name), "%s", client_name ? client_name : "libvfiobroker");
	lim.max_message_bytes = ipc_limits_default.max_datagram;
	lim.max_fds = ipc_limits_default.max_fds;
	/* Calls are synchronous: one request in flight at a time. */
	lim.max_outstanding = 1;
	req.version = VB__DEV__VERSION__VERSION_CURRENT;
	req.client = name;
	req.limits = &lim;
	r = hello_call(dev, &req, no_ring, &m);
	if (r < 0)
		return r;
	rep = (const Vb__Dev__HelloReply *)m->body;
	if (rep->version != VB__DEV__VERSION__VERSION_CURRENT)
		return -EPROTONOSUPPORT;
	if (strlen(rep->bdf) >= sizeof(dev->bdf))
		return -EPROTO;
	limits_from_pb(rep->limits, &dev->peer);
	memcpy(dev->bdf, rep->bdf, strlen(rep->bdf) + 1);
	dev->broker_wait_ms =
	    rep->broker_wait_ms > INT32_MAX ? INT32_MAX : (int)rep->broker_wait_ms;
	if (dev->ring.page)
		ring_answer(dev, rep->ring);
	return 0;
}

/* What a failed connect says to its caller: the worker's own message when it refused the
 * handshake (kept by the connection), else the step that failed. */
static int connect_failed(struct vfb_dev *dev, const char *path, int r, char *why, size_t len)
{
	if (!why || !len)
		return r;
	if (dev && dev->conn.last_error[0])
		snprintf(why, len, "%s", dev->conn.last_error);
	else if (r == -EPROTONOSUPPORT)
		snprintf(why, len,
			 "the worker speaks another device protocol version (this library: "
			 "%u)",
			 VB__DEV__VERSION__VERSION_CURRENT);
	else if (!dev || !dev->conn.chan)
		snprintf(why, len, "cannot connect to %s: %s", path ? path : "the socket given",
			 strerror(-r));
	else
		snprintf(why, len, "handshake with the worker: %s", strerror(-r));
	return r;
}

static int dev_start(int fd, const char *path, const char *client_name, uint32_t flags,
		     struct vfb_dev **ret, char *why, size_t why_len)
{
	_cleanup_free_ struct vfb_dev *dev = NULL;
	_cleanup_close_ int own = -1;
	int r;

	if (why && why_len)
		why[0] = '\0';
	if ((flags & ~VFB_DEV_CONNECT_NO_RING) || !ret) {
		if (why && why_len)
			snprintf(why, why_len, "%s",
				 !ret ? "no handle to return" : "unknown flags");
		return -EINVAL;
	}
	if (!path) {
		/* The caller keeps `fd` unless we succeed, so the channel works on a duplicate
		 * and the original is closed only once the handshake went through. */
		own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (own < 0)
			return connect_failed(NULL, path, -errno, why, why_len);
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return connect_failed(NULL, path, -ENOMEM, why, why_len);
	if (path)
		r = vfb__conn_open(&dev->conn, path, &ipc_proto_device, VB__DEV__TYPE__EVENT);
	else
		r = vfb__conn_init(&dev->conn, own, &ipc_proto_device, VB__DEV__TYPE__EVENT);
	if (r < 0)
		return connect_failed(NULL, path, r, why, why_len);
	(void)TAKE_FD(own); /* the connection's now */
	dev->conn.timeout_ms = VFB_TIMEOUT_DEFAULT_MS;
	if (flags & VFB_DEV_CONNECT_NO_RING)
		snprintf(dev->ring_why, sizeof(dev->ring_why),
			 "not offered (VFB_DEV_CONNECT_NO_RING)");
	r = hello(dev, client_name, flags & VFB_DEV_CONNECT_NO_RING);
	if (r < 0) {
		(void)connect_failed(dev, path, r, why, why_len);
		vfb_dev_close(TAKE_PTR(dev));
		return r;
	}
	if (!path)
		close(fd);
	*ret = TAKE_PTR(dev);
	return 0;
}

int vfb_dev_connect_why(const char *path, const char *client_name, uint32_t flags,
			struct vfb_dev **ret, char *why, size_t why_len)
{
	if (!path || !*path) {
		if (why && why_len)
			snprintf(why, why_len, "no socket path");
		return -EINVAL;
	}
	return dev_start(-1, path, client_name, flags, ret, why, why_len);
}

int vfb_dev_connect(const char *path, const char *client_name, uint32_t flags, struct vfb_dev **ret)
{
	return vfb_dev_connect_why(path, client_name, flags, ret, NULL, 0);
}

int vfb_dev_connect_fd_why(int fd, const char *client_name, uint32_t flags, struct vfb_dev **ret,
			   char *why, size_t why_len)
{
	int r = vfb__conn_check_fd(fd);

	if (r < 0) {
		if (why && why_len)
			snprintf(why, why_len, "fd %d cannot carry a connection: %s", fd,
				 strerror(-r));
		return r;
	}
	return dev_start(fd, NULL, client_name, flags, ret, why, why_len);
}

int vfb_dev_connect_fd(int fd, const char *client_name, uint32_t flags, struct vfb_dev **ret)
{
	return vfb_dev_connect_fd_why(fd, client_name, flags, ret, NULL, 0);
}

void vfb_dev_close(struct vfb_dev *dev)
{
	if (!dev)
		return;
	vfb__ring_fini(&dev->ring);
	vfb__conn_fini(&dev->conn);
	free(dev);
}

bool vfb_dev_ring_active(const struct vfb_dev *dev)
{
	return dev->ring_on;
}

const char *vfb_dev_ring_reason(const struct vfb_dev *dev)
{
	return dev->ring_on ? "" : dev->ring_why;
}

int vfb_dev_set_timeout(struct vfb_dev *dev, int timeout_ms)
{
	return vfb__conn_set_timeout(&dev->conn, timeout_ms);
}

const char *vfb_dev_last_error(const struct vfb_dev *dev)
{
	return dev->conn.last_error;
}

const char *vfb_dev_bdf(const struct vfb_dev *dev)
{
	return dev->bdf;
}

void vfb_dev_peer_limits(const struct vfb_dev *dev, struct vfb_limits *ret)
{
	*ret = dev->peer;
}

int vfb_dev_device_info(struct vfb_dev *dev, struct vfb_device_info *ret)
{
	Vb__Empty req = VB__EMPTY__INIT;
	const Vb__Dev__DeviceInfo *rep;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	r = vfb__conn_call(&dev->conn, VB__DEV__TYPE__DEVICE_INFO, &req.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	rep = (const Vb__Dev__DeviceInfo *)m->body;
	if (strlen(rep->bdf) >= sizeof(ret->bdf))
		return -EPROTO;
	memset(ret, 0, sizeof(*ret));
	memcpy(ret->bdf, rep->bdf, strlen(rep->bdf) + 1);
	ret->flags = rep->flags;
	ret->num_regions = rep->num_regions;
	ret->num_irqs = rep->num_irqs;
	ret->vendor_id = rep->vendor_id;
	ret->device_id = rep->device_id;
	ret->subsystem_vendor_id = rep->subsystem_vendor_id;
	ret->subsystem_id = rep->subsystem_id;
	ret->class_code = rep->class_code;
	return 0;
}

/* Copies and checks the mappable areas; every area must lie inside the region. */
static int region_areas(const Vb__Region *reg, struct vfb_region_info *out)
{
	if (reg->n_mmap_areas > VFB_MMAP_AREAS_MAX)
		return -EPROTO;
	for (size_t i = 0; i < reg->n_mmap_areas; i++) {
		const Vb__MmapArea *a = reg->mmap_areas[i];

		if (a->size == 0 || a->offset > reg->size || a->size > reg->size - a->offset)
			return -EPROTO;
		out->areas[i].offset = a->offset;
		out->areas[i].size = a->size;
	}
	out->nareas = (uint32_t)reg->n_mmap_areas;
	if (out->nareas == 0 && (reg->flags & VFIO_REGION_INFO_FLAG_MMAP) && reg->size > 0) {
		/* No sparse capability: the whole region is mappable. */
		out->areas[0].offset = 0;
		out->areas[0].size = reg->size;
		out->nareas = 1;
	}
	return 0;
}

int vfb_dev_region_info(struct vfb_dev *dev, uint32_t index, struct vfb_region_info *ret)
{
	Vb__Dev__RegionInfoRequest req = VB__DEV__REGION_INFO_REQUEST__INIT;
	struct vfb_region_info info;
	const Vb__Region *reg;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	req.index = index;
	r = vfb__conn_call(&dev->conn, VB__DEV__TYPE__REGION_INFO, &req.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	reg = (const Vb__Region *)m->body;
	memset(&info, 0, sizeof(info));
	info.mmap_fd = -1;
	if (reg->index != index || (reg->size && reg->offset > UINT64_MAX - reg->size))
		return -EPROTO;
	info.index = reg->index;
	info.flags = reg->flags;
	info.size = reg->size;
	info.offset = reg->offset;
	info.msix_mappable = reg->msix_mappable;
	r = region_areas(reg, &info);
	if (r < 0)
		return r; /* m's cleanup closes the fd we did not take */
	if (m->nfds > 0 && info.nareas > 0)
		info.mmap_fd = ipc_msg_take_fd(m, 0);
	else
		info.nareas = 0; /* nothing to map with: every access is trapped */
	*ret = info;
	return 0;
}

int vfb_dev_irq_info(struct vfb_dev *dev, uint32_t index, struct vfb_irq_info *ret)
{
	Vb__Dev__IrqInfoRequest req = VB__DEV__IRQ_INFO_REQUEST__INIT;
	const Vb__Irq *irq;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	req.index = index;
	r = vfb__conn_call(&dev->conn, VB__DEV__TYPE__IRQ_INFO, &req.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	irq = (const Vb__Irq *)m->body;
	if (irq->index != index)
		return -EPROTO;
	ret->index = irq->index;
	ret->flags = irq->flags;
	ret->count = irq->count;
	return 0;
}

int vfb_dev_event_fd(const struct vfb_dev *dev)
{
	return dev->conn.epfd;
}

int vfb_dev_next_event(struct vfb_dev *dev, struct vfb_event *ret)
{
	const Vb__Dev__Event *ev;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	r = vfb__conn_next_event(&dev->conn, &m);
	if (r < 0)
		return r;
	ev = (const Vb__Dev__Event *)m->body;
	memset(ret, 0, sizeof(*ret));
	ret->kind = ev->kind;
	ret->command = ev->command;
	ret->timeout_ms = ev->timeout_ms;
	/* More BARs than a device has is nonsense; keep the ones that fit rather than lose the
	 * event, whose kind is what matters most. */
	for (size_t i = 0; i < ev->n_bars && ret->nbars < VFB_BARS_MAX; i++) {
		ret->bars[ret->nbars].index = ev->bars[i]->index;
		ret->bars[ret->nbars].address = ev->bars[i]->address;
		ret->bars[ret->nbars].enabled = ev->bars[i]->enabled;
		ret->nbars++;
	}
	return 0;
}

size_t vfb__dev_irq_batch(const struct vfb_dev *dev)
{
	size_t n = vfb__conn_max_request_fds(&dev->conn, VB__DEV__TYPE__SET_IRQ_FDS);

	if (dev->peer.max_fds && dev->peer.max_fds < n)
		n = dev->peer.max_fds;
	return n;
}
