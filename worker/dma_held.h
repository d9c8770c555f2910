/*
 * dma_held: the DMA ranges a worker in broker mode holds as mapped for its VMM, as the channel
 * to the broker orders them: a DMA_MAP the broker answered done (in time) adds its range, a
 * DMA_UNMAP removes its range when it is sent (the broker carries it out before anything sent
 * later), a DMA_UNMAP_ALL empties the set. broker_ops.c asks it which ranges a DMA_MAP given up
 * on could have created: the broker refuses a map over a range this device holds (EEXIST,
 * broker/dma.c), so unmapping such a map's range when it times out would remove the mapping
 * the VMM was told it has.
 *
 * The same set serves the worker's other two lists of ranges: standalone mode's mappings
 * (standalone.c, which refuses overlaps itself, as the broker does) and a vfio-user session's
 * (vfu_cmd.c, whose unmap covers several mappings and is split into exact ones here).
 *
 * Ranges never overlap: each caller refuses an overlapping range before it adds one (the
 * broker-mode worker adds only ranges the broker mapped, and the broker refuses overlaps).
 * Kept sorted by IOVA, searched by bisection. Not thread-safe.
 */
#ifndef VB_WKR_DMA_HELD_H
#define VB_WKR_DMA_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wkr_held_range {
	uint64_t iova, size;
};

struct wkr_held {
	struct wkr_held_range *r; /* sorted by iova */
	size_t n, cap;
};

/* 0, or -ENOMEM (the set is unchanged). After wkr_held_reserve() the next add cannot fail: a
 * caller that must record what another party already did reserves before asking it. */
int wkr_held_add(struct wkr_held *h, uint64_t iova, uint64_t size);
/* Room for one more range: 0, or -ENOMEM. */
int wkr_held_reserve(struct wkr_held *h);
/* Removes exactly [iova, iova+size) (an unmap is exact, broker/dma.c); true if it was held. */
bool wkr_held_remove(struct wkr_held *h, uint64_t iova, uint64_t size);
/* Whether any held range overlaps [iova, iova+size). */
bool wkr_held_overlaps(const struct wkr_held *h, uint64_t iova, uint64_t size);
/* How many held ranges overlap [iova, iova+size) (size 0: none); *first gets the index in h->r
 * of the first of them, which are consecutive there (ranges do not overlap one another). */
size_t wkr_held_span(const struct wkr_held *h, uint64_t iova, uint64_t size, size_t *first);
void wkr_held_clear(struct wkr_held *h);
/* Frees the memory; the set is empty and usable again afterwards. */
void wkr_held_free(struct wkr_held *h);

#endif
