/*
 * dma_held: the DMA ranges a worker in broker mode holds as mapped for its VMM, as the channel
 * to the broker orders them: a DMA_MAP the broker answered done (in time) adds its range, a
 * DMA_UNMAP removes its range when it is sent (the broker carries it out before anything sent
 * later), a DMA_UNMAP_ALL empties the set. broker_ops.c asks it which ranges a DMA_MAP given up
 * on could have created: the broker refuses a map over a range this device holds (EEXIST,
 * broker/dma.c), so unmapping such a map's range when it times out would remove the mapping
 * the VMM was told it has.
 *
 * Ranges never overlap (the broker refuses overlaps); kept sorted by IOVA, searched by
 * bisection. Trusts its caller for that: it adds only ranges the broker mapped. Not
 * thread-safe.
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

/* 0, or -ENOMEM (the set is unchanged). */
int wkr_held_add(struct wkr_held *h, uint64_t iova, uint64_t size);
/* Removes exactly [iova, iova+size) (an unmap is exact, broker/dma.c); true if it was held. */
bool wkr_held_remove(struct wkr_held *h, uint64_t iova, uint64_t size);
/* Whether any held range overlaps [iova, iova+size). */
bool wkr_held_overlaps(const struct wkr_held *h, uint64_t iova, uint64_t size);
void wkr_held_clear(struct wkr_held *h);
/* Frees the memory; the set is empty and usable again afterwards. */
void wkr_held_free(struct wkr_held *h);

#endif
