/*
 * dma_iova: the IOVA search over a table of DMA mappings kept sorted by IOVA without overlaps,
 * and the owner test of a shared mapping, both shared by the VM's DMA table (dma.c) and the
 * state record's copy of it (record_state.c, record_apply.c), so that both find, refuse, insert
 * and share by the same rule. Trusts its callers for the table's order
 * and layout (dma.h); it reads the tables and changes nothing.
 */
#include <string.h>

#include "dma.h"

struct iova_span {
	uint64_t iova;
	uint64_t size;
};

/* Entry i's IOVA and size: the first two fields of every entry (dma.h). */
static struct iova_span span_at(const void *maps, size_t stride, uint32_t i)
{
	struct iova_span s;

	memcpy(&s, (const unsigned char *)maps + (size_t)i * stride, sizeof(s));
	return s;
}

uint32_t brk_dma_iova_lower(const void *maps, uint32_t n, size_t stride, uint64_t iova)
{
	uint32_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (span_at(maps, stride, mid).iova < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

long brk_dma_iova_overlap(const void *maps, uint32_t n, size_t stride, uint64_t iova, uint64_t last,
			  uint32_t *pos)
{
	uint32_t i = brk_dma_iova_lower(maps, n, stride, iova);
	struct iova_span s;

	if (pos)
		*pos = i;
	if (i < n && span_at(maps, stride, i).iova <= last)
		return i;
	if (i > 0) {
		s = span_at(maps, stride, i - 1);
		if (s.iova + (s.size - 1) >= iova)
			return i - 1;
	}
	return -1;
}

bool brk_dma_owned_by(uint64_t first, const uint64_t *also, uint32_t nalso, uint64_t owner)
{
	uint32_t i;

	if (first == owner)
		return true;
	for (i = 0; i < nalso; i++) {
		if (also[i] == owner)
			return true;
	}
	return false;
}

long brk_dma_iova_find(const void *maps, uint32_t n, size_t stride, uint64_t iova, uint64_t size)
{
	uint32_t i = brk_dma_iova_lower(maps, n, stride, iova);
	struct iova_span s;

	if (i >= n)
		return -1;
	s = span_at(maps, stride, i);
	return s.iova == iova && s.size == size ? (long)i : -1;
}
