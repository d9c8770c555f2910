/*
 * device_pb: converts a device's region and IRQ tables into the protobuf lists of the worker
 * handoff. Trusts the brk_vfio_dev (already validated when it was read from the kernel).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "device_pb.h"

static uint32_t count_present(const struct brk_vfio_dev *d, uint32_t *ret_areas)
{
	const struct brk_region *r;
	uint32_t i, n = 0, areas = 0;

	for (i = 0; i < brk_vfio_dev_info(d)->num_regions; i++) {
		r = brk_vfio_dev_region(d, i);
		if (!r->present)
			continue;
		n++;
		areas += r->n_areas;
	}
	*ret_areas = areas;
	return n;
}

static void fill_regions(const struct brk_vfio_dev *d, struct brk_vfio_dev_pb *o)
{
	const struct brk_region *r;
	Vb__Region *pr;
	uint32_t i, j, a = 0;

	for (i = 0; i < brk_vfio_dev_info(d)->num_regions; i++) {
		r = brk_vfio_dev_region(d, i);
		if (!r->present)
			continue;
		pr = &o->region_store[o->n_regions];
		vb__region__init(pr);
		pr->index = r->index;
		pr->flags = r->flags;
		pr->size = r->size;
		pr->offset = r->offset;
		pr->msix_mappable = r->msix_mappable;
		pr->n_mmap_areas = r->n_areas;
		pr->mmap_areas = r->n_areas ? &o->area_ptrs[a] : NULL;
		for (j = 0; j < r->n_areas; j++, a++) {
			vb__mmap_area__init(&o->area_store[a]);
			o->area_store[a].offset = r->areas[j].offset;
			o->area_store[a].size = r->areas[j].size;
			o->area_ptrs[a] = &o->area_store[a];
		}
		o->regions[o->n_regions++] = pr;
	}
}

int brk_vfio_dev_pb_fill(const struct brk_vfio_dev *d, struct brk_vfio_dev_pb *out)
{
	struct brk_vfio_dev_pb o;
	const struct brk_irq_info *q;
	uint32_t i, nreg, nareas, nirq = brk_vfio_dev_info(d)->num_irqs;

	memset(&o, 0, sizeof(o));
	nreg = count_present(d, &nareas);
	o.regions = calloc(nreg + 1, sizeof(*o.regions));
	o.region_store = calloc(nreg + 1, sizeof(*o.region_store));
	o.area_store = calloc(nareas + 1, sizeof(*o.area_store));
	o.area_ptrs = calloc(nareas + 1, sizeof(*o.area_ptrs));
	o.irqs = calloc(nirq + 1, sizeof(*o.irqs));
	o.irq_store = calloc(nirq + 1, sizeof(*o.irq_store));
	if (!o.regions || !o.region_store || !o.area_store || !o.area_ptrs || !o.irqs ||
	    !o.irq_store) {
		brk_vfio_dev_pb_release(&o);
		return -ENOMEM;
	}
	fill_regions(d, &o);
	for (i = 0; i < nirq; i++) {
		q = brk_vfio_dev_irq(d, i);
		vb__irq__init(&o.irq_store[i]);
		o.irq_store[i].index = q->index;
		o.irq_store[i].flags = q->flags;
		o.irq_store[i].count = q->count;
		o.irqs[i] = &o.irq_store[i];
	}
	o.n_irqs = nirq;
	*out = o;
	return 0;
}

void brk_vfio_dev_pb_release(struct brk_vfio_dev_pb *o)
{
	free(o->regions);
	free(o->region_store);
	free(o->area_store);
	free(o->area_ptrs);
	free(o->irqs);
	free(o->irq_store);
	memset(o, 0, sizeof(*o));
}
