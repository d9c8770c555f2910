/*
 * dev_io: config space and region (BAR) accesses, DMA mappings, interrupt fds, reset and the
 * removal acknowledgement of a device handle.
 *
 * Arguments are checked here, before anything is sent, so that a bad call costs nothing and
 * changes nothing; the worker and the broker check everything again, since a VMM is untrusted.
 * Answers are checked for the length that was asked for.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "device.pb-c.h"

#include "dev.h"
#include "ipc_ring.h"

/* How much longer than the handle's timeout a request of `type` waits: the worker may hold a
 * write (one that changes interrupt routing waits for it), a DMA request, interrupt fds and a
 * reset for the broker, as long as its HELLO said, before it answers ETIMEDOUT itself with the
 * request undone (a broker restart); giving up first would leave the VMM not knowing whether
 * the request took effect. Reads never wait for the broker. */
static int broker_wait(const struct vfb_dev *dev, uint16_t type)
{
	switch (type) {
	case VB__DEV__TYPE__CFG_WRITE:
	case VB__DEV__TYPE__REGION_WRITE:
	case VB__DEV__TYPE__DMA_MAP:
	case VB__DEV__TYPE__DMA_UNMAP:
	case VB__DEV__TYPE__SET_IRQ_FDS:
	case VB__DEV__TYPE__RESET:
		return dev->broker_wait_ms;
	default:
		return 0;
	}
}

/* Whether an access of `len` bytes goes through the ring. */
static bool ring_takes(const struct vfb_dev *dev, size_t len)
{
	return dev->ring_on && len <= VB_RING_DATA_MAX;
}

/* One access through the ring. A ring that timed out, lost its worker or answered nonsense is
 * dropped: the next access goes over the socket, which reports a dead worker itself. */
static int ring_access(struct vfb_dev *dev, uint32_t op, uint32_t index, uint64_t offset, void *buf,
		       size_t len)
{
	struct vfb__conn *c = &dev->conn;
	bool broken = false;
	int r;

	c->last_error[0] = '\0';
	r = vfb__ring_call(&dev->ring, op, index, offset, buf, len,
			   vfb__conn_wait_ms(c, broker_wait(dev, (uint16_t)op)),
			   ipc_chan_fd(c->chan), c->last_error, sizeof(c->last_error), &broken);
	if (broken) {
		dev->ring_on = false;
		snprintf(dev->ring_why, sizeof(dev->ring_why), "dropped after an access failed: %s",
			 strerror(-r));
	}
	return r;
}

/* The naturally aligned piece of at most 4 bytes that starts at `off`, len bytes left. */
static size_t cfg_piece(uint32_t off, size_t len)
{
	if ((off & 3) == 0 && len >= 4)
		return 4;
	if ((off & 1) == 0 && len >= 2)
		return 2;
	return 1;
}

static int cfg_check(uint32_t offset, const void *buf, size_t len)
{
	if (len > 0 && !buf)
		return -EINVAL;
	if (offset > VFB_CFG_SPACE_SIZE || len > VFB_CFG_SPACE_SIZE - offset)
		return -EINVAL;
	return 0;
}

static int read_data(struct vfb__conn *c, uint16_t type, const ProtobufCMessage *req, void *buf,
		     size_t len)
{
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	const Vb__Dev__Data *d;
	int r;

	r = vfb__conn_call(c, type, req, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	d = (const Vb__Dev__Data *)m->body;
	if (d->data.len != len)
		return -EPROTO;
	memcpy(buf, d->data.data, len);
	return 0;
}

static int call_empty(struct vfb_dev *dev, uint16_t type, const ProtobufCMessage *req,
		      const int *fds, size_t nfds)
{
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;

	return vfb__conn_call(&dev->conn, type, req, fds, nfds, broker_wait(dev, type), &m);
}

int vfb_dev_cfg_read(struct vfb_dev *dev, uint32_t offset, void *buf, size_t len)
{
	Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;
	uint8_t *p = buf;
	int r;

	r = cfg_check(offset, buf, len);
	while (r == 0 && len > 0) {
		size_t n = cfg_piece(offset, len);

		req.offset = offset;
		req.size = (uint32_t)n;
		if (ring_takes(dev, n))
			r = ring_access(dev, VB__DEV__TYPE__CFG_READ, 0, offset, p, n);
		else
			r = read_data(&dev->conn, VB__DEV__TYPE__CFG_READ, &req.base, p, n);
		offset += (uint32_t)n;
		p += n;
		len -= n;
	}
	return r;
}

int vfb_dev_cfg_write(struct vfb_dev *dev, uint32_t offset, const void *buf, size_t len)
{
	Vb__Dev__CfgWrite req = VB__DEV__CFG_WRITE__INIT;
	const uint8_t *p = buf;
	int r;

	r = cfg_check(offset, buf, len);
	while (r == 0 && len > 0) {
		size_t n = cfg_piece(offset, len);

		req.offset = offset;
		req.data.data = (uint8_t *)p;
		req.data.len = n;
		if (ring_takes(dev, n))
			r = ring_access(dev, VB__DEV__TYPE__CFG_WRITE, 0, offset, (void *)p, n);
		else
			r = call_empty(dev, VB__DEV__TYPE__CFG_WRITE, &req.base, NULL, 0);
		offset += (uint32_t)n;
		p += n;
		len -= n;
	}
	return r;
}

static int region_check(uint64_t offset, const void *buf, size_t len)
{
	if (len > 0 && !buf)
		return -EINVAL;
	if (len > UINT64_MAX - offset)
		return -EINVAL;
	return 0;
}

int vfb_dev_region_read(struct vfb_dev *dev, uint32_t index, uint64_t offset, void *buf, size_t len)
{
	Vb__Dev__RegionRead req = VB__DEV__REGION_READ__INIT;
	size_t chunk = vfb__dev_chunk(dev);
	uint8_t *p = buf;
	int r;

	r = region_check(offset, buf, len);
	while (r == 0 && len > 0) {
		size_t n = len < chunk ? len : chunk;

		req.index = index;
		req.offset = offset;
		req.size = (uint32_t)n;
		if (ring_takes(dev, n))
			r = ring_access(dev, VB__DEV__TYPE__REGION_READ, index, offset, p, n);
		else
			r = read_data(&dev->conn, VB__DEV__TYPE__REGION_READ, &req.base, p, n);
		offset += n;
		p += n;
		len -= n;
	}
	return r;
}

int vfb_dev_region_write(struct vfb_dev *dev, uint32_t index, uint64_t offset, const void *buf,
			 size_t len)
{
	Vb__Dev__RegionWrite req = VB__DEV__REGION_WRITE__INIT;
	size_t chunk = vfb__dev_chunk(dev);
	const uint8_t *p = buf;
	int r;

	r = region_check(offset, buf, len);
	while (r == 0 && len > 0) {
		size_t n = len < chunk ? len : chunk;

		req.index = index;
		req.offset = offset;
		req.data.data = (uint8_t *)p;
		req.data.len = n;
		if (ring_takes(dev, n))
			r = ring_access(dev, VB__DEV__TYPE__REGION_WRITE, index, offset, (void *)p,
					n);
		else
			r = call_empty(dev, VB__DEV__TYPE__REGION_WRITE, &req.base, NULL, 0);
		offset += n;
		p += n;
		len -= n;
	}
	return r;
}

int vfb_dev_dma_map(struct vfb_dev *dev, int memfd, uint64_t offset, uint64_t iova, uint64_t size,
		    uint32_t prot)
{
	Vb__DmaMap req = VB__DMA_MAP__INIT;
	int r;

	if (size == 0 || iova > UINT64_MAX - size || offset > UINT64_MAX - size)
		return -EINVAL;
	if (prot == 0 || (prot & ~(VFB_DMA_READ | VFB_DMA_WRITE)))
		return -EINVAL;
	r = vfb__fd_check(memfd);
	if (r < 0)
		return r;
	req.iova = iova;
	req.size = size;
	req.offset = offset;
	req.prot = (prot & VFB_DMA_READ ? VB__DEV__DMA_PROT__DMA_PROT_READ : 0) |
		   (prot & VFB_DMA_WRITE ? VB__DEV__DMA_PROT__DMA_PROT_WRITE : 0);
	return call_empty(dev, VB__DEV__TYPE__DMA_MAP, &req.base, &memfd, 1);
}

int vfb_dev_dma_unmap(struct vfb_dev *dev, uint64_t iova, uint64_t size)
{
	Vb__DmaUnmap req = VB__DMA_UNMAP__INIT;

	if (size == 0 || iova > UINT64_MAX - size)
		return -EINVAL;
	req.iova = iova;
	req.size = size;
	return call_empty(dev, VB__DEV__TYPE__DMA_UNMAP, &req.base, NULL, 0);
}

static int set_irq_fds(struct vfb_dev *dev, uint32_t index, uint32_t start, const int *fds,
		       uint32_t count, bool resample)
{
	Vb__Dev__SetIrqFds req = VB__DEV__SET_IRQ_FDS__INIT;

	req.index = index;
	req.start = start;
	req.count = resample ? 1 : count;
	req.resample = resample;
	return call_empty(dev, VB__DEV__TYPE__SET_IRQ_FDS, &req.base, fds, count);
}

int vfb_dev_set_irq_fds(struct vfb_dev *dev, uint32_t index, uint32_t start, const int *fds,
			uint32_t count)
{
	size_t batch = vfb__dev_irq_batch(dev);
	int r;

	if (count == 0)
		return fds ? -EINVAL : set_irq_fds(dev, index, start, NULL, 0, false);
	if (!fds || start > UINT32_MAX - count)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		r = vfb__fd_check(fds[i]);
		if (r < 0)
			return r;
	}
	if (batch == 0)
		return -EPROTO;
	for (uint32_t done = 0; done < count;) {
		uint32_t n = count - done < batch ? count - done : (uint32_t)batch;

		r = set_irq_fds(dev, index, start + done, fds + done, n, false);
		if (r < 0)
			return r;
		done += n;
	}
	return 0;
}

int vfb_dev_set_intx_fds(struct vfb_dev *dev, int trigger_fd, int resample_fd)
{
	int fds[2] = {trigger_fd, resample_fd};
	int r;

	if (trigger_fd == -1)
		return resample_fd == -1 ? set_irq_fds(dev, VFB_IRQ_INTX, 0, NULL, 0, false)
					 : -EINVAL;
	r = vfb__fd_check(trigger_fd);
	if (r < 0)
		return r;
	if (resample_fd == -1)
		return set_irq_fds(dev, VFB_IRQ_INTX, 0, fds, 1, false);
	r = vfb__fd_check(resample_fd);
	if (r < 0)
		return r;
	return set_irq_fds(dev, VFB_IRQ_INTX, 0, fds, 2, true);
}

int vfb_dev_reset(struct vfb_dev *dev)
{
	Vb__Empty req = VB__EMPTY__INIT;

	return call_empty(dev, VB__DEV__TYPE__RESET, &req.base, NULL, 0);
}

int vfb_dev_removal_ack(struct vfb_dev *dev)
{
	Vb__Empty req = VB__EMPTY__INIT;

	return call_empty(dev, VB__DEV__TYPE__REMOVAL_ACK, &req.base, NULL, 0);
}
