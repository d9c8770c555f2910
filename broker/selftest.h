/*
 * selftest: what vfio-broker-selftest's parts (selftest.c, selftest_record.c) share: the opened
 * VFIO objects and the TAP output.
 */
#ifndef VB_BROKER_SELFTEST_H
#define VB_BROKER_SELFTEST_H

#include <stdbool.h>
#include <stdint.h>

#include "dma.h"
#include "vfio.h"

#define OWNER_A 1
#define OWNER_B 2
#define RW	(BRK_DMA_PROT_READ | BRK_DMA_PROT_WRITE)

struct ctx {
	struct brk_container *c;
	struct brk_group *g;
	struct brk_vfio_dev *d;
	struct brk_dma *dma;
	uint64_t pg;
	int memfd; /* 64 pages, sealed against shrinking */
	int memfd_unsealed;
	uint32_t avail0; /* the kernel's DMA_AVAIL before we mapped anything */
	bool have_avail;
};

/* One TAP line: "ok N - name", or "not ok N - name: " and the reason. */
void check(bool ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A memfd of `size` bytes with `seals`; exits 2 on failure. */
int make_memfd(uint64_t size, int seals);
/* brk_dma_map of x->memfd on x->dma, one TAP line. */
void map_ok(struct ctx *x, const char *name, uint64_t owner, uint64_t iova, uint64_t size,
	    uint64_t off);
/* x->dma's mappings and pinned bytes. */
void stats(const struct ctx *x, uint32_t *n, uint64_t *bytes);
/* x->dma's count of mappings equals the kernel's (DMA_AVAIL), when the kernel reports it. */
void check_kernel_count(struct ctx *x, const char *name);

/* selftest_record.c: the state record against the real container and device. */
void selftest_record(struct ctx *x, const char *bdf);

#endif
