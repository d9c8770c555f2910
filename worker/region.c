/*
 * region: trapped accesses to the device's regions and the mappable areas offered to the VMM.
 *
 * Every access is bounds checked against the region table before the device fd is touched; the
 * config region is served by cfg.c, the MSI-X table and PBA by msix.c, the rest is pread/pwrite
 * at the region's offset in the device fd. Mappable areas never include a page that holds the
 * MSI-X table or PBA, even when the kernel reports the region as MSI-X mappable: a VMM that
 * mapped those pages would bypass the emulation (and the guest would program the real table).
 *
 * Trusts: the region table. Distrusts: index, offset and length of every access.
 */
#include <errno.h>

#include "base.h"
#include "wkr_internal.h"

static int region_check(const struct wkr_dev *d, uint32_t index, uint64_t off, size_t len,
			uint32_t need)
{
	const struct wkr_region *r;

	if (index >= WKR_NUM_REGIONS || len == 0 || len > WKR_ACCESS_MAX)
		return -EINVAL;
	r = &d->info.regions[index];
	if (r->size == 0)
		return -ENOENT;
	if (off >= r->size || len > r->size - off)
		return -EINVAL;
	if (!(r->flags & need))
		return -EACCES;
	return 0;
}

static int dev_io(struct wkr_dev *d, bool wr, uint32_t index, uint64_t off, uint8_t *buf,
		  size_t len)
{
	uint64_t at = d->info.regions[index].offset + off;
	ssize_t n =
	    wr ? d->io.pwrite(d->io.ctx, buf, len, at) : d->io.pread(d->io.ctx, buf, len, at);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

static int region_rw(struct wkr_dev *d, bool wr, uint32_t index, uint64_t off, uint8_t *buf,
		     size_t len)
{
	int r = region_check(d, index, off, len,
			     wr ? VFIO_REGION_INFO_FLAG_WRITE : VFIO_REGION_INFO_FLAG_READ);

	if (r < 0)
		return r;
	if (index == VFIO_PCI_CONFIG_REGION_INDEX)
		return wr ? wkr_cfg_write(d, (uint32_t)off, buf, len)
			  : wkr_cfg_read(d, (uint32_t)off, buf, len);
	while (len) {
		size_t n;
		int what = wkr__msix_classify(d, index, off, len, &n);

		if (what && wr)
			r = wkr__msix_write(d, what, off, buf, n);
		else if (what)
			wkr__msix_read(d, what, off, buf, n);
		else
			r = dev_io(d, wr, index, off, buf, n);
		if (r < 0)
			return r;
		off += n;
		buf += n;
		len -= n;
	}
	return 0;
}

int wkr_region_read(struct wkr_dev *d, uint32_t index, uint64_t off, void *buf, size_t len)
{
	return region_rw(d, false, index, off, buf, len);
}

int wkr_region_write(struct wkr_dev *d, uint32_t index, uint64_t off, const void *buf, size_t len)
{
	/* region_rw only reads from `buf` when writing. */
	return region_rw(d, true, index, off, (uint8_t *)(uintptr_t)buf, len);
}

struct span {
	uint64_t start, end;
};

/* Removes [h.start, h.end) from the spans in `s`; returns the new count (cap: `max`). Spans
 * emptied by the cut are left with start == end and skipped by the caller. */
static size_t cut(struct span *s, size_t n, size_t max, struct span h)
{
	size_t out = n;

	for (size_t i = 0; i < n; i++) {
		struct span o = s[i];
		bool left, right;

		if (h.end <= o.start || h.start >= o.end)
			continue;
		left = o.start < h.start;
		right = o.end > h.end;
		s[i] = left ? (struct span){o.start, h.start} : (struct span){0, 0};
		if (right && !left)
			s[i] = (struct span){h.end, o.end};
		else if (right && out < max)
			s[out++] = (struct span){h.end, o.end};
	}
	return out;
}

int wkr_region_mmap_areas(const struct wkr_dev *d, uint32_t index, struct wkr_mmap_area *areas,
			  size_t max, size_t *ret_n)
{
	const struct wkr_region *r;
	struct span s[2 * WKR_MMAP_AREAS_MAX + 4];
	uint64_t pg;
	size_t out = 0;
	const size_t cap = ARRAY_SIZE(s);
	size_t n = 0;

	if (index >= WKR_NUM_REGIONS || !ret_n)
		return -EINVAL;
	r = &d->info.regions[index];
	if (r->size == 0)
		return -ENOENT;
	*ret_n = 0;
	if (!(r->flags & VFIO_REGION_INFO_FLAG_MMAP) || index == VFIO_PCI_CONFIG_REGION_INDEX)
		return 0;
	if (r->nareas == 0)
		s[n++] = (struct span){0, r->size};
	for (uint32_t i = 0; i < r->nareas && i < WKR_MMAP_AREAS_MAX; i++)
		s[n++] = (struct span){r->areas[i].offset, r->areas[i].offset + r->areas[i].size};
	pg = d->pagesize;
	if (d->msix.present) {
		uint64_t ts = d->msix.toff, te = ts + (uint64_t)d->msix.size * 16;
		uint64_t ps = d->msix.poff, pe = ps + ((uint64_t)d->msix.size + 63) / 64 * 8;

		if (d->msix.tbir == index)
			n = cut(s, n, cap,
				(struct span){ts & ~(pg - 1), (te + pg - 1) & ~(pg - 1)});
		if (d->msix.pbir == index)
			n = cut(s, n, cap,
				(struct span){ps & ~(pg - 1), (pe + pg - 1) & ~(pg - 1)});
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i].end <= s[i].start)
			continue;
		if (out == max)
			return -ENOSPC;
		areas[out++] = (struct wkr_mmap_area){s[i].start, s[i].end - s[i].start};
	}
	*ret_n = out;
	return 0;
}
