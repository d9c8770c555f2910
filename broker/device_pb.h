/*
 * device_pb: a device's region and IRQ tables as the protobuf lists of the worker handoff
 * (vb.brk.Handoff.regions / .irqs, types from proto/common.proto). Kept apart from vfio.h so
 * that only the code that builds a handoff sees generated protobuf types.
 */
#ifndef VB_BROKER_DEVICE_PB_H
#define VB_BROKER_DEVICE_PB_H

#include <stddef.h>

#include "common.pb-c.h"
#include "vfio.h"

/* The lists, and the storage behind them. Assign `regions`/`n_regions` and `irqs`/`n_irqs` to
 * a Handoff (the pointers stay owned by this struct), pack it, then brk_vfio_dev_pb_release(). */
struct brk_vfio_dev_pb {
	Vb__Region **regions;
	size_t n_regions;
	Vb__Irq **irqs;
	size_t n_irqs;
	/* storage: one block per list */
	Vb__Region *region_store;
	Vb__Irq *irq_store;
	Vb__MmapArea *area_store;
	Vb__MmapArea **area_ptrs;
};

/* Fills `out` with every present region (with its sparse mmap areas and MSI-X-mappable flag)
 * and every IRQ index the kernel reported. Errors: -ENOMEM (then `out` holds nothing to
 * release). */
int brk_vfio_dev_pb_fill(const struct brk_vfio_dev *d, struct brk_vfio_dev_pb *out);
/* Frees what brk_vfio_dev_pb_fill() allocated and zeroes `out`; safe on a zeroed struct. */
void brk_vfio_dev_pb_release(struct brk_vfio_dev_pb *out);

#endif
