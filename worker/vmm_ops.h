/*
 * vmm_ops: the checks and steps the two VMM protocols (server_req.c for proto/device.proto,
 * vfu_cmd.c for vfio-user) share, so that a device answers both alike: which parts of a region
 * a VMM may mmap, what a DMA range must look like before the backend hears of it, and what a
 * reset does. `err` gets the reason when one of them fails.
 */
#ifndef VB_WKR_VMM_OPS_H
#define VB_WKR_VMM_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "wkr.h"

/* Non-empty, no wrap, aligned to `pgsize` (0: 4096). -EINVAL otherwise. */
int wkr_vmm_dma_check(uint32_t pgsize, uint64_t iova, uint64_t size, uint64_t offset,
		      struct vb_err *err);

/* The areas of region `index` a VMM may mmap through `grant_fd` (its own grant, from the
 * backend's vmm_admit): none (*ret_n 0) when the device's policy does not allow mmap, the VMM
 * has no grant, the region is absent or the emulation keeps all of it. `areas` has room for
 * WKR_MMAP_AREAS_MAX. -EINVAL for an index out of range. */
int wkr_vmm_mmap_areas(const struct wkr_dev *dev, uint32_t index, bool allow_mmap, int grant_fd,
		       struct wkr_mmap_area *areas, size_t *ret_n, struct vb_err *err);

/* A reset in two steps, so that the emulation follows the device only once the device has
 * been reset (a broker answers later: defer.h): wkr_vmm_reset_device() asks the backend, and
 * when that has completed without error, wkr_vmm_reset_emulation() resets the emulated
 * personality (which routes the interrupts again through the backend). A config write that
 * initiated an FLR (wkr_dev_take_flr()) is followed by the same two steps. */
int wkr_vmm_reset_device(const struct wkr_backend *b, struct vb_err *err);
int wkr_vmm_reset_emulation(struct wkr_dev *dev, struct vb_err *err);

#endif
