/*
 * dma: one VM's table of DMA mappings on its VFIO container: validation, quotas, sharing between
 * the VM's devices, VFIO_IOMMU_MAP_DMA / _UNMAP_DMA, the accounting, and restoring the table from
 * the state record. The vaddr the kernel pins from is a view (dma_view.c); the IOVA search is
 * dma_iova.c's.
 *
 * Trusts: its caller for `owner` and the container fd. Trusts nothing about a request: iova,
 * size, offset, prot and the memfd all come from a worker on behalf of a VMM. Every check runs
 * before the table, the counters or the kernel are touched, and the table has room for the new
 * entry before the kernel is asked, so a map the kernel accepted can always be recorded.
 *
 * The journal (cfg.journal, journal.h) sees every change: an intent before the kernel call (or,
 * for owner changes without one, before the table changes) and the outcome after. A journal that
 * refuses an intent fails the change exactly like a kernel error would.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>
#include <linux/vfio.h>

#include "dma.h"
#include "dma_view.h"
#include "fdkind.h"

struct dma_map {
	uint64_t iova;
	uint64_t size;
	uint64_t offset;
	uint64_t owner; /* who asked first */
	uint64_t *also; /* further owners that asked for the identical mapping, nalso of them */
	uint32_t nalso;
	uint32_t prot;
	dev_t dev; /* the memfd's inode: an identical request names the same memory */
	ino_t ino;
	struct dma_view *view; /* pinned from it; NULL: from a view of its own, already gone */
};
_Static_assert(offsetof(struct dma_map, iova) == 0 && offsetof(struct dma_map, size) == 8,
	       "the IOVA search (brk_dma_iova_*) reads iova and size first");

struct brk_dma {
	const struct brk_sys *sys;
	int fd;
	uint64_t align; /* max(IOMMU smallest page, host page) */
	struct brk_dma_limits limits;
	uint32_t flags;
	uint32_t n_ranges;
	struct brk_dma_range ranges[BRK_DMA_MAX_RANGES];
	struct dma_map *maps; /* sorted by iova, never overlapping */
	uint32_t n, cap;
	struct dma_views views;
	struct brk_dma_stats st;
	struct brk_journal journal;
};

static uint64_t host_page(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (uint64_t)p : 4096;
}

static void set_limits(struct brk_dma *d, const struct brk_dma_limits *l)
{
	d->limits = *l;
	if (d->limits.max_mappings == 0)
		d->limits.max_mappings = BRK_DMA_DEFAULT_MAX_MAPPINGS;
}

int brk_dma_new(const struct brk_dma_cfg *cfg, struct brk_dma **ret)
{
	struct brk_dma *d;
	uint64_t pg = cfg->pgsize;

	uint32_t i;

	if (pg < 1024 || (pg & (pg - 1)) || cfg->container_fd < 0 ||
	    (cfg->flags & ~BRK_DMA_FLAGS_MASK) || cfg->n_ranges > BRK_DMA_MAX_RANGES)
		return -EINVAL;
	for (i = 0; i < cfg->n_ranges; i++) {
		if (cfg->ranges[i].end < cfg->ranges[i].start)
			return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->sys = cfg->sys ? cfg->sys : &brk_sys_real;
	d->fd = cfg->container_fd;
	d->align = pg > host_page() ? pg : host_page();
	d->flags = cfg->flags;
	d->n_ranges = cfg->n_ranges;
	memcpy(d->ranges, cfg->ranges, sizeof(d->ranges));
	set_limits(d, &cfg->limits);
	d->journal = cfg->journal;
	*ret = d;
	return 0;
}

void brk_dma_set_limits(struct brk_dma *d, const struct brk_dma_limits *limits)
{
	set_limits(d, limits);
}

void brk_dma_free(struct brk_dma *d)
{
	uint32_t i;

	if (!d)
		return;
	/* Whatever the kernel refuses to unmap is released when the container fd closes. */
	brk_dma_unmap_all(d, NULL, NULL);
	for (i = 0; i < d->n; i++)
		free(d->maps[i].also);
	free(d->maps);
	brk_dma__views_free(&d->views);
	free(d);
}

/* Called once nothing wraps. */
static int check_iova_ranges(const struct brk_dma *d, uint64_t iova, uint64_t size,
			     struct vb_err *err)
{
	uint64_t last = iova + (size - 1);
	uint32_t i;

	if (d->n_ranges == 0)
		return 0;
	for (i = 0; i < d->n_ranges; i++) {
		if (iova >= d->ranges[i].start && last <= d->ranges[i].end)
			return 0;
	}
	return vb_errf(err, -EINVAL,
		       "IOVA range 0x%llx+0x%llx is not inside one usable IOMMU range (reserved "
		       "regions such as the MSI window are excluded)",
		       (unsigned long long)iova, (unsigned long long)size);
}

static int check_range(const struct brk_dma *d, uint64_t iova, uint64_t size, uint64_t offset,
		       uint32_t prot, struct vb_err *err)
{
	if (prot & ~BRK_DMA_PROT_MASK)
		return vb_errf(err, -EINVAL, "unknown DMA prot bits 0x%x",
			       prot & ~BRK_DMA_PROT_MASK);
	if (!prot)
		return vb_errf(err, -EINVAL, "DMA prot must allow read, write or both");
	if (size == 0)
		return vb_errf(err, -EINVAL, "DMA mapping of size 0");
	if ((iova | size | offset) & (d->align - 1))
		return vb_errf(err, -EINVAL,
			       "iova 0x%llx, size 0x%llx and offset 0x%llx must be aligned to the "
			       "IOMMU page (0x%llx)",
			       (unsigned long long)iova, (unsigned long long)size,
			       (unsigned long long)offset, (unsigned long long)d->align);
	if (iova + (size - 1) < iova)
		return vb_errf(err, -EINVAL, "iova 0x%llx + size 0x%llx wraps around",
			       (unsigned long long)iova, (unsigned long long)size);
	if (offset + (size - 1) < offset)
		return vb_errf(err, -EINVAL, "offset 0x%llx + size 0x%llx wraps around",
			       (unsigned long long)offset, (unsigned long long)size);
	return check_iova_ranges(d, iova, size, err);
}

static int check_memfd(const struct brk_dma *d, int fd, uint64_t offset, uint64_t size,
		       uint32_t prot, struct stat *ret_st, struct vb_err *err)
{
	unsigned flags = (prot & BRK_DMA_PROT_WRITE ? VB_MEMFD_WRITE : 0) |
			 (d->flags & BRK_DMA_ALLOW_UNSEALED ? VB_MEMFD_UNSEALED : 0);

	return vb_memfd_check(fd, offset, size, flags, ret_st, err);
}

static int check_quota(const struct brk_dma *d, uint64_t size, struct vb_err *err)
{
	const struct brk_dma_limits *l = &d->limits;

	if (d->n >= l->max_mappings)
		return vb_errf(err, -ENOSPC, "the VM already has %u DMA mappings, its quota", d->n);
	if (l->max_pinned_bytes && (d->st.pinned_bytes > l->max_pinned_bytes ||
				    size > l->max_pinned_bytes - d->st.pinned_bytes))
		return vb_errf(err, -EDQUOT,
			       "mapping 0x%llx bytes would pin more than the VM's quota of 0x%llx "
			       "(0x%llx pinned)",
			       (unsigned long long)size, (unsigned long long)l->max_pinned_bytes,
			       (unsigned long long)d->st.pinned_bytes);
	return 0;
}

static int reserve(struct brk_dma *d)
{
	struct dma_map *m;
	uint32_t cap;

	if (d->n < d->cap)
		return 0;
	cap = d->cap ? d->cap * 2 : 64;
	m = realloc(d->maps, (size_t)cap * sizeof(*m));
	if (!m)
		return -ENOMEM;
	d->maps = m;
	d->cap = cap;
	return 0;
}

static int kernel_map(struct brk_dma *d, uint64_t iova, uint64_t size, void *vaddr, uint32_t prot)
{
	struct vfio_iommu_type1_dma_map m = {
	    .argsz = sizeof(m),
	    .flags = (prot & BRK_DMA_PROT_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
		     (prot & BRK_DMA_PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
	    .vaddr = (uint64_t)(uintptr_t)vaddr,
	    .iova = iova,
	    .size = size,
	};

	return d->sys->ioctl(d->sys->ctx, d->fd, VFIO_IOMMU_MAP_DMA, &m);
}

static int kernel_unmap(struct brk_dma *d, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u), .iova = iova, .size = size};

	return d->sys->ioctl(d->sys->ctx, d->fd, VFIO_IOMMU_UNMAP_DMA, &u);
}

static int map_error(int r, struct vb_err *err)
{
	switch (r) {
	case -ENOSPC:
		return vb_errf(err, r,
			       "the kernel's DMA mapping limit is reached "
			       "(vfio_iommu_type1 dma_entry_limit)");
	case -ENOMEM:
		return vb_errf(err, r, "the kernel could not pin the memory (RLIMIT_MEMLOCK?)");
	case -EEXIST:
		return vb_errf(err, r, "the kernel already has a mapping in this IOVA range");
	default:
		return vb_errf(err, r, "VFIO_IOMMU_MAP_DMA failed: %s", strerror(-r));
	}
}

static int mmap_error(int r, uint32_t prot, struct vb_err *err)
{
	if (r == -EACCES || r == -EPERM)
		return vb_errf(err, -EACCES,
			       "the memfd cannot be mapped %s (read-only fd or write seal)",
			       prot & BRK_DMA_PROT_WRITE ? "for writing" : "for reading");
	return vb_errf(err, r == -ENOMEM ? r : -EACCES, "mmap of the memfd failed: %s",
		       strerror(-r));
}

/* ---- the kernel's map ---------------------------------------------------------------------- */

static int map_retry(struct brk_dma *d, uint64_t iova, uint64_t size, void *va, uint32_t prot)
{
	int r = kernel_map(d, iova, size, va, prot);

	/* As QEMU does: EBUSY means a stale kernel mapping in the range; drop it, try once more. */
	if (r == -EBUSY && kernel_unmap(d, iova, size) >= 0) {
		r = kernel_map(d, iova, size, va, prot);
		if (r >= 0)
			d->st.ebusy_retries++;
	}
	return r;
}

/* Pins [offset, offset + size) of the memfd at iova, from the memfd's view (*ret_view, which the
 * new mapping then holds a reference on) or, when no view can be had, from a mapping of the range
 * made for this call and dropped right after it: type1 pins every page at map time, replays
 * mappings into new IOMMU domains from the domain (not the vaddr) and unpins by pfn, so the
 * vaddr is not needed afterwards. */
static int do_map(struct brk_dma *d, uint64_t iova, uint64_t size, int fd, uint64_t offset,
		  uint32_t prot, const struct stat *st, struct dma_view **ret_view,
		  struct vb_err *err)
{
	int mprot = PROT_READ | (prot & BRK_DMA_PROT_WRITE ? PROT_WRITE : 0);
	struct dma_view *v;
	void *va;
	int r;

	*ret_view = NULL;
	v = brk_dma__view_get(&d->views, fd, st, offset, size, prot, &r);
	if (r < 0)
		return mmap_error(r, prot, err);
	if (v) {
		brk_dma__view_populate(v, offset, size);
		v->refs++;
		r = map_retry(d, iova, size, (char *)v->base + offset, prot);
		if (r < 0) {
			brk_dma__view_put(&d->views, v);
			return map_error(r, err);
		}
		*ret_view = v;
		return 0;
	}
	va = mmap(NULL, size, mprot, MAP_SHARED, fd, (off_t)offset);
	if (va == MAP_FAILED)
		return mmap_error(-errno, prot, err);
	r = map_retry(d, iova, size, va, prot);
	munmap(va, size);
	return r < 0 ? map_error(r, err) : 0;
}

static int journal_error(int r, struct vb_err *err)
{
	return vb_errf(err, r, "the broker's state record could not be written: %s", strerror(-r));
}

static int journaled_map(struct brk_dma *d, uint64_t owner, uint64_t iova, uint64_t size, int fd,
			 uint64_t offset, uint32_t prot, const struct stat *st,
			 struct dma_view **ret_view, struct vb_err *err)
{
	struct brk_jop op = {.kind = BRK_JOP_DMA_MAP,
			     .owner = owner,
			     .iova = iova,
			     .size = size,
			     .offset = offset,
			     .prot = prot,
			     .dev = (uint64_t)st->st_dev,
			     .ino = (uint64_t)st->st_ino};
	int r = brk_journal_intent(&d->journal, &op);

	if (r < 0)
		return journal_error(r, err);
	r = do_map(d, iova, size, fd, offset, prot, st, ret_view, err);
	brk_journal_done(&d->journal, &op, r == 0);
	return r;
}

static bool has_owner(const struct dma_map *m, uint64_t owner)
{
	return brk_dma_owned_by(m->owner, m->also, m->nalso, owner);
}

/* Removes `owner` from a shared mapping (nalso > 0); the mapping stays for the others. */
static void drop_owner(struct dma_map *m, uint64_t owner)
{
	uint32_t i;

	if (m->owner == owner) {
		m->owner = m->also[--m->nalso];
		return;
	}
	for (i = 0; i < m->nalso; i++) {
		if (m->also[i] == owner) {
			m->also[i] = m->also[--m->nalso];
			return;
		}
	}
}

/* An owner joins or leaves a mapping: no kernel call, so the journal records the change itself
 * before the table makes it. */
static int journal_owner(struct brk_dma *d, const struct dma_map *m, enum brk_jop_kind kind,
			 uint64_t owner, struct vb_err *err)
{
	struct brk_jop op = {.kind = kind, .owner = owner, .iova = m->iova, .size = m->size};
	int r = brk_journal_intent(&d->journal, &op);

	if (r < 0)
		return journal_error(r, err);
	brk_journal_done(&d->journal, &op, true);
	return 0;
}

/* One container serves every device of a VM, so a VMM that maps its RAM once per device asks
 * for the same mapping several times. An identical request (same range, memory and prot) from
 * another owner joins the existing mapping instead of failing as an overlap: it grants nothing
 * new (all devices of the container already reach every mapping) and the memfd check has
 * already proved the requester holds that memory. */
static int share(struct brk_dma *d, struct dma_map *m, uint64_t owner, uint64_t iova, uint64_t size,
		 uint64_t offset, uint32_t prot, const struct stat *st, struct vb_err *err)
{
	uint64_t *also;
	int r;

	if (m->iova != iova || m->size != size || m->offset != offset || m->prot != prot ||
	    m->dev != st->st_dev || m->ino != st->st_ino)
		return vb_errf(err, -EEXIST,
			       "IOVA range 0x%llx+0x%llx overlaps the mapping at 0x%llx+0x%llx",
			       (unsigned long long)iova, (unsigned long long)size,
			       (unsigned long long)m->iova, (unsigned long long)m->size);
	if (has_owner(m, owner))
		return vb_errf(err, -EEXIST, "this device already mapped 0x%llx+0x%llx",
			       (unsigned long long)iova, (unsigned long long)size);
	also = realloc(m->also, (m->nalso + 1) * sizeof(*also));
	if (!also)
		return vb_errf(err, -ENOMEM, "out of memory");
	m->also = also;
	r = journal_owner(d, m, BRK_JOP_DMA_SHARE, owner, err);
	if (r < 0)
		return r;
	m->also[m->nalso++] = owner;
	d->st.shares++;
	return 0;
}

int brk_dma_map(struct brk_dma *d, uint64_t owner, uint64_t iova, uint64_t size, int memfd,
		uint64_t offset, uint32_t prot, struct vb_err *err)
{
	struct dma_view *view = NULL;
	struct stat st = {0};
	uint32_t pos = 0;
	long o = -1;
	int r;

	r = check_range(d, iova, size, offset, prot, err);
	if (r == 0)
		r = check_memfd(d, memfd, offset, size, prot, &st, err);
	if (r == 0)
		o = brk_dma_iova_overlap(d->maps, d->n, sizeof(*d->maps), iova, iova + (size - 1),
					 &pos);
	if (o >= 0) {
		r = share(d, &d->maps[o], owner, iova, size, offset, prot, &st, err);
		if (r == 0)
			return 0;
	}
	if (r == 0)
		r = check_quota(d, size, err);
	if (r == 0 && reserve(d) < 0)
		r = vb_errf(err, -ENOMEM, "out of memory");
	if (r == 0)
		r = journaled_map(d, owner, iova, size, memfd, offset, prot, &st, &view, err);
	if (r < 0) {
		d->st.rejects++;
		return r;
	}
	memmove(&d->maps[pos + 1], &d->maps[pos], (size_t)(d->n - pos) * sizeof(d->maps[0]));
	d->maps[pos] = (struct dma_map){.iova = iova,
					.size = size,
					.offset = offset,
					.owner = owner,
					.prot = prot,
					.dev = st.st_dev,
					.ino = st.st_ino,
					.view = view};
	d->n++;
	d->st.mappings = d->n;
	d->st.pinned_bytes += size;
	d->st.maps++;
	return 0;
}

/* Unmaps entry i in the kernel; the caller removes it from the table. */
static int unmap_entry(struct brk_dma *d, uint32_t i)
{
	struct dma_map *m = &d->maps[i];
	struct brk_jop op = {
	    .kind = BRK_JOP_DMA_UNMAP, .owner = m->owner, .iova = m->iova, .size = m->size};
	int r;

	r = brk_journal_intent(&d->journal, &op);
	if (r < 0)
		return r;
	r = kernel_unmap(d, m->iova, m->size);
	brk_journal_done(&d->journal, &op, r >= 0);
	if (r < 0)
		return r;
	free(m->also);
	m->also = NULL;
	m->nalso = 0;
	brk_dma__view_put(&d->views, m->view);
	m->view = NULL;
	d->st.pinned_bytes -= m->size;
	d->st.unmaps++;
	return 0;
}

int brk_dma_unmap(struct brk_dma *d, uint64_t owner, uint64_t iova, uint64_t size,
		  struct vb_err *err)
{
	long i = brk_dma_iova_find(d->maps, d->n, sizeof(*d->maps), iova, size);
	int r;

	if (i < 0)
		return vb_errf(err, -ENOENT,
			       "no DMA mapping at 0x%llx of size 0x%llx (unmap exactly what was "
			       "mapped)",
			       (unsigned long long)iova, (unsigned long long)size);
	if (!has_owner(&d->maps[i], owner))
		return vb_errf(err, -EPERM, "the DMA mapping at 0x%llx belongs to another device",
			       (unsigned long long)iova);
	if (d->maps[i].nalso) {
		r = journal_owner(d, &d->maps[i], BRK_JOP_DMA_UNSHARE, owner, err);
		if (r == 0)
			drop_owner(&d->maps[i], owner);
		return r;
	}
	r = unmap_entry(d, i);
	if (r < 0)
		return vb_errf(err, r, "VFIO_IOMMU_UNMAP_DMA of 0x%llx+0x%llx failed: %s",
			       (unsigned long long)iova, (unsigned long long)size, strerror(-r));
	memmove(&d->maps[i], &d->maps[i + 1], (size_t)(d->n - i - 1) * sizeof(d->maps[0]));
	d->n--;
	d->st.mappings = d->n;
	return 0;
}

/* Releases every entry for which all || owner matches, compacting the table in one pass. An
 * owner's share of a mapping others still hold is dropped without a kernel call. */
static int unmap_where(struct brk_dma *d, bool all, uint64_t owner, uint32_t *ret_count,
		       uint64_t *ret_bytes)
{
	uint32_t i, w = 0, count = 0;
	uint64_t bytes = 0;
	int r, first = 0;

	for (i = 0; i < d->n; i++) {
		if (all || has_owner(&d->maps[i], owner)) {
			uint64_t size = d->maps[i].size;

			if (!all && d->maps[i].nalso) {
				r = journal_owner(d, &d->maps[i], BRK_JOP_DMA_UNSHARE, owner, NULL);
				if (r == 0) {
					drop_owner(&d->maps[i], owner);
					count++;
					bytes += size;
				} else if (!first) {
					first = r;
				}
				d->maps[w++] = d->maps[i];
				continue;
			}
			r = unmap_entry(d, i);
			if (r == 0) {
				count++;
				bytes += size;
				continue;
			}
			if (!first)
				first = r;
		}
		d->maps[w++] = d->maps[i];
	}
	d->n = w;
	d->st.mappings = w;
	if (ret_count)
		*ret_count = count;
	if (ret_bytes)
		*ret_bytes = bytes;
	return first;
}

int brk_dma_unmap_owner(struct brk_dma *d, uint64_t owner, uint32_t *ret_count, uint64_t *ret_bytes)
{
	return unmap_where(d, false, owner, ret_count, ret_bytes);
}

int brk_dma_unmap_all(struct brk_dma *d, uint32_t *ret_count, uint64_t *ret_bytes)
{
	return unmap_where(d, true, 0, ret_count, ret_bytes);
}

void brk_dma_forget_all(struct brk_dma *d, uint32_t *ret_count, uint64_t *ret_bytes)
{
	struct brk_jop op = {.kind = BRK_JOP_DMA_FORGET};
	uint32_t i;

	/* Nothing is left in the kernel to keep consistent with: a journal that cannot record
	 * this keeps listing mappings that are gone, the safe direction (an adopter's unmap of
	 * them finds nothing). */
	if (brk_journal_intent(&d->journal, &op) == 0)
		brk_journal_done(&d->journal, &op, true);
	if (ret_count)
		*ret_count = d->n;
	if (ret_bytes)
		*ret_bytes = d->st.pinned_bytes;
	for (i = 0; i < d->n; i++) {
		free(d->maps[i].also);
		brk_dma__view_put(&d->views, d->maps[i].view);
	}
	d->st.unmaps += d->n;
	d->n = 0;
	d->st.mappings = 0;
	d->st.pinned_bytes = 0;
}

static int restore_check(const struct brk_dma *d, const struct brk_dma_mapping *m,
			 const struct brk_dma_mapping *prev, struct vb_err *err)
{
	uint32_t i, k;

	if (!m->size || !m->prot || (m->prot & ~BRK_DMA_PROT_MASK) ||
	    ((m->iova | m->size | m->offset) & (d->align - 1)) ||
	    m->iova + (m->size - 1) < m->iova || m->offset + (m->size - 1) < m->offset)
		return vb_errf(
		    err, -EINVAL,
		    "recorded mapping 0x%llx+0x%llx (offset 0x%llx, prot 0x%x) is empty, "
		    "unaligned to 0x%llx, wraps or has bad prot",
		    (unsigned long long)m->iova, (unsigned long long)m->size,
		    (unsigned long long)m->offset, m->prot, (unsigned long long)d->align);
	if (prev && m->iova <= prev->iova + (prev->size - 1))
		return vb_errf(err, -EINVAL,
			       "recorded mapping at 0x%llx is out of order or overlaps the one at "
			       "0x%llx",
			       (unsigned long long)m->iova, (unsigned long long)prev->iova);
	for (i = 0; i < m->nalso; i++) {
		for (k = 0; k <= i; k++) {
			if ((k < i ? m->also[k] : m->owner) == m->also[i])
				return vb_errf(err, -EINVAL,
					       "recorded mapping at 0x%llx lists an owner twice",
					       (unsigned long long)m->iova);
		}
	}
	return 0;
}

int brk_dma_restore(struct brk_dma *d, const struct brk_dma_mapping *maps, uint32_t n,
		    const struct brk_dma_stats *counters, struct vb_err *err)
{
	uint64_t pinned = 0;
	uint32_t i;
	int r = 0;

	if (d->n)
		return vb_errf(err, -EBUSY, "the DMA table is not empty: restore into a new one");
	for (i = 0; i < n && r == 0; i++)
		r = restore_check(d, &maps[i], i ? &maps[i - 1] : NULL, err);
	if (r < 0)
		return r;
	if (n > d->cap) {
		struct dma_map *m = realloc(d->maps, (size_t)n * sizeof(*m));

		if (!m)
			return vb_errf(err, -ENOMEM, "out of memory");
		d->maps = m;
		d->cap = n;
	}
	for (i = 0; i < n; i++) {
		const struct brk_dma_mapping *s = &maps[i];
		struct dma_map *m = &d->maps[i];

		*m = (struct dma_map){.iova = s->iova,
				      .size = s->size,
				      .offset = s->offset,
				      .owner = s->owner,
				      .prot = s->prot,
				      .dev = (dev_t)s->dev,
				      .ino = (ino_t)s->ino};
		if (s->nalso && !(m->also = malloc(s->nalso * sizeof(*m->also)))) {
			while (i--)
				free(d->maps[i].also);
			return vb_errf(err, -ENOMEM, "out of memory");
		}
		if (s->nalso)
			memcpy(m->also, s->also, s->nalso * sizeof(*m->also));
		m->nalso = s->nalso;
		pinned += s->size;
	}
	d->n = n;
	d->st = (struct brk_dma_stats){.mappings = n, .pinned_bytes = pinned};
	if (counters) {
		d->st.maps = counters->maps;
		d->st.unmaps = counters->unmaps;
		d->st.shares = counters->shares;
	}
	return 0;
}

void brk_dma_stats(const struct brk_dma *d, struct brk_dma_stats *out)
{
	*out = d->st;
	out->views = d->views.n;
}

void brk_dma_owner_usage(const struct brk_dma *d, uint64_t owner, uint32_t *ret_count,
			 uint64_t *ret_bytes)
{
	uint32_t i, count = 0;
	uint64_t bytes = 0;

	for (i = 0; i < d->n; i++) {
		if (has_owner(&d->maps[i], owner)) {
			count++;
			bytes += d->maps[i].size;
		}
	}
	if (ret_count)
		*ret_count = count;
	if (ret_bytes)
		*ret_bytes = bytes;
}
