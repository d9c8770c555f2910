/*
 * dma_view: the broker's own mappings of VM memory, one per memfd, that VFIO_IOMMU_MAP_DMA pins
 * from, kept while mappings use them, and the filling of their page tables (in parallel for a
 * large cold range) before a pin. Responsible for never keeping memory alive that no mapping
 * uses. Trusts dma.c to have checked the memfd, offset, size and access before asking, and to
 * pair every reference it takes with a put.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "dma_view.h"

#define VIEW_CHUNK (2ull << 20) /* populate granularity: a huge page, 512 small ones */

static void view_free(struct dma_view *v)
{
	munmap(v->base, v->len);
	free(v->warm);
	free(v);
}

static void view_drop(struct dma_views *vs, uint32_t i)
{
	view_free(vs->v[i]);
	vs->v[i] = vs->v[--vs->n];
}

/* A mapping let go of its view; the last one takes the view with it. Keeping an unused view
 * for a remap of the same memory would keep that memory alive after its VMM freed it: measured,
 * a VMM that unmapped and closed a 1 GiB hugetlb memfd could then not allocate 2 GiB from a pool
 * that held both. Remaps that matter find the view in use: QEMU maps one RAM memfd as several
 * sections (below and above the 32-bit hole), and moving one leaves the others mapped. */
void brk_dma__view_put(struct dma_views *vs, struct dma_view *v)
{
	uint32_t i;

	if (!v || --v->refs)
		return;
	for (i = 0; i < vs->n; i++) {
		if (vs->v[i] == v) {
			view_drop(vs, i);
			return;
		}
	}
}

/* A new view of all of `fd`: writable when the fd and its seals allow it (a later request for
 * write access through a read-write fd then shares it), else read-only. NULL with *ret_r set:
 * the mmap failed, or no slot is free (*ret_r 0: the caller maps the range on its own). */
static struct dma_view *view_new(struct dma_views *vs, int fd, const struct stat *st, uint32_t prot,
				 int *ret_r)
{
	struct dma_view *v;
	uint64_t chunks = ((uint64_t)st->st_size + VIEW_CHUNK - 1) / VIEW_CHUNK;
	void *base;
	bool w = true;

	*ret_r = 0;
	if (vs->n == BRK_DMA_VIEWS_MAX)
		return NULL;
	base = mmap(NULL, (size_t)st->st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED && !(prot & BRK_DMA_PROT_WRITE) &&
	    (errno == EACCES || errno == EPERM)) {
		w = false;
		base = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0);
	}
	if (base == MAP_FAILED) {
		*ret_r = -errno;
		return NULL;
	}
	v = calloc(1, sizeof(*v));
	if (v)
		v->warm = calloc((size_t)(chunks + 7) / 8, 1);
	if (!v || !v->warm) {
		munmap(base, (size_t)st->st_size);
		free(v);
		*ret_r = -ENOMEM;
		return NULL;
	}
	*v = (struct dma_view){.dev = st->st_dev,
			       .ino = st->st_ino,
			       .writable = w,
			       .base = base,
			       .len = (uint64_t)st->st_size,
			       .warm = v->warm};
	vs->v[vs->n++] = v;
	return v;
}

/* The view a map of [offset, offset + size) of this memfd pins from: an existing one that covers
 * the range with the access asked, else a new one. NULL with *ret_r 0: the range needs a
 * transient mapping (the VM's views are all in use, or the memfd grew under a view in use). */
struct dma_view *brk_dma__view_get(struct dma_views *vs, int fd, const struct stat *st,
				   uint64_t offset, uint64_t size, uint32_t prot, int *ret_r)
{
	uint32_t i;

	*ret_r = 0;
	for (i = 0; i < vs->n; i++) {
		struct dma_view *v = vs->v[i];

		if (v->dev != st->st_dev || v->ino != st->st_ino ||
		    ((prot & BRK_DMA_PROT_WRITE) && !v->writable))
			continue;
		if (offset + size <= v->len)
			return v;
		return NULL; /* grown since; the view in use stays as it is */
	}
	return view_new(vs, fd, st, prot, ret_r);
}

struct populate_job {
	char *addr;
	size_t len;
	int r;
};

static void *populate_one(void *arg)
{
	struct populate_job *j = arg;

	j->r = madvise(j->addr, j->len, MADV_POPULATE_READ) < 0 ? -errno : 0;
	return NULL;
}

static unsigned populate_threads(uint64_t bytes)
{
	cpu_set_t set;
	uint64_t n;
	int cpus;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	cpus = CPU_COUNT(&set);
	n = bytes / BRK_DMA_POPULATE_SLICE;
	if (n > (uint64_t)cpus)
		n = (uint64_t)cpus;
	if (n > BRK_DMA_POPULATE_THREADS_MAX)
		n = BRK_DMA_POPULATE_THREADS_MAX;
	return n ? (unsigned)n : 1;
}

/*
 * Fills the view's page tables for [lo, hi) (chunk-aligned) before the pin, on several threads
 * when the range is large: a booting VM's RAM is not populated yet, and allocating and zeroing
 * its pages in parallel is the part of the map that parallelises; the pin that follows walks
 * filled page tables. MADV_POPULATE_READ, not _WRITE: on a shared memfd mapping a read fault
 * maps up to 16 resident pages at once (fault-around), and since shmem and hugetlbfs do no
 * dirty tracking the entries are writable already, so type1's write pin faults no more. Errors
 * are not the map's: the pin then faults the same pages and reports what the kernel says.
 */
static void populate(struct dma_view *v, uint64_t lo, uint64_t hi)
{
	struct populate_job jobs[BRK_DMA_POPULATE_THREADS_MAX];
	pthread_t tid[BRK_DMA_POPULATE_THREADS_MAX];
	bool started[BRK_DMA_POPULATE_THREADS_MAX] = {false};
	unsigned n = populate_threads(hi - lo), i;
	uint64_t chunks = (hi - lo + VIEW_CHUNK - 1) / VIEW_CHUNK, at = lo, c;
	bool ok = true;

	for (i = 0; i < n; i++) {
		uint64_t part = (chunks / n + (i < chunks % n)) * VIEW_CHUNK;
		uint64_t end = at + part > v->len ? v->len : at + part;

		jobs[i] = (struct populate_job){.addr = (char *)v->base + at, .len = end - at};
		at += part;
		/* The calling thread takes the last slice, and every slice when threads fail. */
		if (i + 1 < n && pthread_create(&tid[i], NULL, populate_one, &jobs[i]) == 0)
			started[i] = true;
	}
	for (i = 0; i < n; i++) {
		if (!started[i])
			populate_one(&jobs[i]);
	}
	for (i = 0; i < n; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		ok &= jobs[i].r == 0;
	}
	if (!ok)
		return;
	for (c = lo / VIEW_CHUNK; c < hi / VIEW_CHUNK + (hi % VIEW_CHUNK != 0); c++)
		v->warm[c / 8] |= (uint8_t)(1u << (c % 8));
}

/* Populates the cold chunks of [offset, offset + size) of the view, in one call for the span
 * from the first cold chunk to the last (warm ones in between cost a page-table walk). */
void brk_dma__view_populate(struct dma_view *v, uint64_t offset, uint64_t size)
{
	uint64_t first = offset / VIEW_CHUNK, last = (offset + size - 1) / VIEW_CHUNK, c;
	uint64_t lo = UINT64_MAX, hi = 0;

	for (c = first; c <= last; c++) {
		if (v->warm[c / 8] & (1u << (c % 8)))
			continue;
		if (lo == UINT64_MAX)
			lo = c;
		hi = c + 1;
	}
	if (lo == UINT64_MAX)
		return;
	hi *= VIEW_CHUNK;
	populate(v, lo * VIEW_CHUNK, hi > v->len ? v->len : hi);
}

void brk_dma__views_free(struct dma_views *vs)
{
	uint32_t i;

	for (i = 0; i < vs->n; i++)
		view_free(vs->v[i]);
	vs->n = 0;
}
