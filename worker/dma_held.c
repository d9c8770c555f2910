/*
 * dma_held: the ranges a worker holds as mapped (see dma_held.h), a sorted array.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dma_held.h"

/* The first range whose iova is >= `iova`. */
static size_t lower(const struct wkr_held *h, uint64_t iova)
{
	size_t lo = 0, hi = h->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (h->r[mid].iova < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int wkr_held_reserve(struct wkr_held *h)
{
	size_t cap = h->cap ? 2 * h->cap : 16;
	struct wkr_held_range *r;

	if (h->n < h->cap)
		return 0;
	r = realloc(h->r, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	h->r = r;
	h->cap = cap;
	return 0;
}

int wkr_held_add(struct wkr_held *h, uint64_t iova, uint64_t size)
{
	size_t i = lower(h, iova);

	if (wkr_held_reserve(h) < 0)
		return -ENOMEM;
	memmove(&h->r[i + 1], &h->r[i], (h->n - i) * sizeof(h->r[0]));
	h->r[i] = (struct wkr_held_range){iova, size};
	h->n++;
	return 0;
}

bool wkr_held_remove(struct wkr_held *h, uint64_t iova, uint64_t size)
{
	size_t i = lower(h, iova);

	if (i == h->n || h->r[i].iova != iova || h->r[i].size != size)
		return false;
	memmove(&h->r[i], &h->r[i + 1], (h->n - i - 1) * sizeof(h->r[0]));
	h->n--;
	return true;
}

size_t wkr_held_span(const struct wkr_held *h, uint64_t iova, uint64_t size, size_t *first)
{
	size_t i = lower(h, iova), end;
	uint64_t last = iova + (size - 1);

	*first = i;
	if (size == 0)
		return 0;
	/* The range just below `iova` reaches into it when it ends at or past iova. */
	if (i > 0 && h->r[i - 1].iova + (h->r[i - 1].size - 1) >= iova)
		*first = --i;
	/* Then every range that starts at or below the last byte (callers refuse a range that
	 * wraps before they ask). */
	for (end = i; end < h->n && h->r[end].iova <= last; end++)
		;
	return end - *first;
}

/* Not wkr_held_span() != 0: this stays O(log n) for a range that covers many. */
bool wkr_held_overlaps(const struct wkr_held *h, uint64_t iova, uint64_t size)
{
	size_t i = lower(h, iova);
	uint64_t last = iova + (size - 1);

	if (size == 0)
		return false;
	if (i < h->n && h->r[i].iova <= last)
		return true;
	return i > 0 && h->r[i - 1].iova + (h->r[i - 1].size - 1) >= iova;
}

void wkr_held_clear(struct wkr_held *h)
{
	h->n = 0;
}

void wkr_held_free(struct wkr_held *h)
{
	free(h->r);
	*h = (struct wkr_held){0};
}
