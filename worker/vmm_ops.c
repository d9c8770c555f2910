/*
 * vmm_ops: what both VMM protocols do the same way (see vmm_ops.h). Trusts the device model and
 * the backend; every argument comes from a VMM and is checked here.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm_ops.h"

int wkr_vmm_dma_check(uint32_t pgsize, uint64_t iova, uint64_t size, uint64_t offset,
		      struct vb_err *err)
{
	uint64_t pg = pgsize ? pgsize : 4096;

	if (size == 0 || iova + size < iova || offset + size < offset) {
		return vb_errf(
		    err, -EINVAL, "DMA range iova %#llx size %#llx offset %#llx wraps or is empty",
		    (unsigned long long)iova, (unsigned long long)size, (unsigned long long)offset);
	}
	if ((iova | size | offset) & (pg - 1)) {
		return vb_errf(err, -EINVAL,
			       "DMA range iova %#llx size %#llx offset %#llx is not aligned to the "
			       "IOMMU page size %#llx",
			       (unsigned long long)iova, (unsigned long long)size,
			       (unsigned long long)offset, (unsigned long long)pg);
	}
	return 0;
}

int wkr_vmm_mmap_areas(const struct wkr_dev *dev, uint32_t index, bool allow_mmap, int grant_fd,
		       struct wkr_mmap_area *areas, size_t *ret_n, struct vb_err *err)
{
	size_t n = 0;
	int e;

	*ret_n = 0;
	if (index >= WKR_NUM_REGIONS) {
		return vb_errf(err, -EINVAL, "region index %u: the device has %d", index,
			       WKR_NUM_REGIONS);
	}
	e = wkr_dev_info(dev)->regions[index].size
		? wkr_region_mmap_areas(dev, index, areas, WKR_MMAP_AREAS_MAX, &n)
		: 0;
	if (e < 0) {
		return vb_errf(err, e, "region %u: its mappable areas do not fit a reply", index);
	}
	/* Nothing to map with: a client told "mappable" would map the whole region. */
	if (allow_mmap && grant_fd >= 0)
		*ret_n = n;
	return 0;
}

int wkr_vmm_reset_device(const struct wkr_backend *b, struct vb_err *err)
{
	return b->ops->reset(b->ctx, err);
}

int wkr_vmm_reset_emulation(struct wkr_dev *dev, struct vb_err *err)
{
	/* The virtual registers follow the device (wkr_dev_reset() says how). */
	int e = wkr_dev_reset(dev);

	if (e == -EIO)
		return vb_errf(err, e,
			       "device reset, but its config space could not be re-read: %s",
			       strerror(-e));
	if (e < 0)
		return vb_errf(err, e,
			       "device reset, but its interrupts could not be routed again: %s",
			       strerror(-e));
	return 0;
}
