/*
 * dma_view: for dma.c only. The broker's own mappings of VM memory that every
 * VFIO_IOMMU_MAP_DMA pins from (a view per memfd, shared by the mappings of that memory) and the
 * filling of their page tables before a pin (dma_view.c).
 */
#ifndef VB_BROKER_DMA_VIEW_H
#define VB_BROKER_DMA_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "dma.h"

/* The broker's own mapping of one memfd (the whole file), the vaddr every VFIO_IOMMU_MAP_DMA of
 * that memory pins from. It is kept while mappings use it (see brk_dma__view_put), so its page
 * tables are filled once, not at every map: filling them cost 3-4 times the pin itself (issue 15:
 * map and unmap of 1 GiB of resident 4 KiB pages took 5.2x the direct ioctls with a view per map).
 * A view holds no page (type1 pins from the page tables, and a hole punched in the memfd zaps the
 * view's entries as it does the VMM's); it holds the file open and its page tables, 2 MiB per GiB
 * of 4 KiB pages. */
struct dma_view {
	dev_t dev;
	ino_t ino;
	bool writable;
	uint32_t refs; /* mappings pinned from it */
	void *base;
	uint64_t len;
	/* One bit per VIEW_CHUNK already populated through this view: only cold chunks are
	 * populated before a pin, so a warm view costs the pin alone. */
	uint8_t *warm;
};

/* A VM's views, at most BRK_DMA_VIEWS_MAX. */
struct dma_views {
	struct dma_view *v[BRK_DMA_VIEWS_MAX];
	uint32_t n;
};

/* The view a map of [offset, offset + size) of memfd `fd` (`st` its fstat) pins from, an existing
 * one or a new one; the caller takes a reference (refs++). NULL with *ret_r 0: no view (all slots
 * in use, or the memfd grew under the view in use), the caller maps the range on its own; NULL
 * with *ret_r < 0: the mmap failed (-errno) or -ENOMEM. */
struct dma_view *brk_dma__view_get(struct dma_views *vs, int fd, const struct stat *st,
				   uint64_t offset, uint64_t size, uint32_t prot, int *ret_r);
/* Drops a mapping's reference; the last one unmaps the view. NULL is ignored. */
void brk_dma__view_put(struct dma_views *vs, struct dma_view *v);
/* Fills the page tables of the cold part of [offset, offset + size) before a pin. Errors are
 * not reported: the pin faults the same pages and says what the kernel says. */
void brk_dma__view_populate(struct dma_view *v, uint64_t offset, uint64_t size);
/* Unmaps every view, whatever its references (the table is being freed). */
void brk_dma__views_free(struct dma_views *vs);

#endif
