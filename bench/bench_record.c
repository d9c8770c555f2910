/*
 * bench_record: what the broker's state record (broker/record*.c) adds to a DMA map and unmap.
 *
 *   record_journal_map_unmap: the journal hooks dma.c calls around VFIO_IOMMU_MAP_DMA and
 *     _UNMAP_DMA (intent, commit; intent, commit: four entries with their CRCs, the live copy's
 *     update, and the compactions the journal's growth brings, amortized), on a record that
 *     already holds `FILL` mappings, so a compaction copies a realistic table;
 *   baseline memfd_mmap_munmap_2MiB: the part of a map the broker pays on the host whatever the
 *     record does: mapping 2 MiB of the VM's memfd MAP_SHARED and dropping the view (dma.c's
 *     do_map without the ioctl, which needs real VFIO: the guest bench dma_map_unmap_2MiB has it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "record.h"

#define FILL	 4096u
#define MAP_SIZE (2u << 20)

struct ctx {
	struct brk_journal j;
	int memfd;
};

static int journal_pair(struct ctx *c, enum brk_jop_kind kind, uint64_t iova)
{
	struct brk_jop op = {.kind = kind,
			     .owner = 1,
			     .iova = iova,
			     .size = MAP_SIZE,
			     .prot = 3,
			     .dev = 1,
			     .ino = 2};
	int r = c->j.intent(&c->j, &op);

	if (r < 0)
		return r;
	c->j.done(&c->j, &op, true);
	return 0;
}

static int figure(void *ctx, uint64_t n)
{
	struct ctx *c = ctx;
	uint64_t iova = (uint64_t)FILL * MAP_SIZE;
	int r = 0;

	for (uint64_t i = 0; i < n && r == 0; i++) {
		r = journal_pair(c, BRK_JOP_DMA_MAP, iova);
		if (r == 0)
			r = journal_pair(c, BRK_JOP_DMA_UNMAP, iova);
	}
	return r;
}

static int base(void *ctx, uint64_t n)
{
	struct ctx *c = ctx;

	for (uint64_t i = 0; i < n; i++) {
		void *p = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);

		if (p == MAP_FAILED)
			return -errno;
		munmap(p, MAP_SIZE);
	}
	return 0;
}

int main(void)
{
	struct brk_rec_vm vm = {.name = "bench", .max_mappings = FILL + 1};
	struct brk_record *rec = NULL;
	struct vb_err err = {0};
	struct ctx c = {.memfd = memfd_create("bench-record", MFD_CLOEXEC)};
	struct bench_pair p = {.name = "record_journal_map_unmap",
			       .baseline = "memfd_mmap_munmap_2MiB",
			       .figure = figure,
			       .base = base,
			       .ctx = &c};
	int r;

	if (c.memfd < 0 || ftruncate(c.memfd, MAP_SIZE) < 0) {
		bench_fail(p.name, "memfd: %m");
		return 1;
	}
	r = brk_record_new(&rec, &err);
	if (r == 0)
		r = brk_record_vm_put(rec, &vm);
	if (r == 0)
		r = brk_record_dma_journal(rec, "bench", &c.j);
	for (uint32_t i = 0; i < FILL && r == 0; i++)
		r = journal_pair(&c, BRK_JOP_DMA_MAP, (uint64_t)i * MAP_SIZE);
	if (r < 0) {
		bench_fail(p.name, "state record: %s", vb_err_msg(&err, r));
		return 1;
	}
	r = bench_run(&p);
	brk_record_free(rec);
	close(c.memfd);
	return r < 0;
}
