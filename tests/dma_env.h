/*
 * dma_env: the DMA table of test_dma.c and test_dma_model.c, on the fake VFIO kernel with a
 * container fd that stands for the real one and a memfd to map from; and the check that a
 * rejected call changed nothing (REJECT).
 */
#ifndef VB_TESTS_DMA_ENV_H
#define VB_TESTS_DMA_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "dma.h"
#include "fake_vfio.h"
#include "record.h"

#define PG     0x1000ull
#define MEMSZ  (64 * PG)
#define RW     (BRK_DMA_PROT_READ | BRK_DMA_PROT_WRITE)
#define OWNER1 11
#define OWNER2 22

struct t {
	struct fake_vfio f;
	struct brk_dma *d;
	int cfd;   /* stands in for the container fd */
	int memfd; /* MEMSZ bytes, sealed against shrinking */
	struct vb_err err;
};

struct snap {
	struct brk_dma_stats st;
	unsigned maps, unmaps;
};

/* A table with `limits` (NULL: the defaults) and `flags`, its journal hooks `j` (t_new: none),
 * and its end. */
struct t *t_new_j(const struct brk_dma_limits *limits, uint32_t flags, const struct brk_journal *j);
struct t *t_new(const struct brk_dma_limits *limits, uint32_t flags);
void t_free(struct t *t);
/* A mapping that must succeed; two of them, of OWNER1 and OWNER2, for "nothing lost" checks. */
void map_ok(struct t *t, uint64_t owner, uint64_t iova, uint64_t size, uint64_t off);
void map_two(struct t *t);
/* t->memfd opened again through /proc/self/fd with `flags` (O_RDONLY: a read-only fd of the
 * same memory). */
int reopen_memfd(const struct t *t, int flags);
/* The table's counters and the kernel's DMA ioctl counts now. */
struct snap snap(const struct t *t);
/* The call returned `want` with a message containing `msg`, and nothing changed: counters, the
 * kernel (no ioctl), and both mappings of map_two() are still there to be unmapped exactly. */
void assert_rejected(struct t *t, struct snap before, int r, int want, const char *msg);

#define REJECT(t, call, want, msg)                     \
	do {                                           \
		struct snap s_ = snap(t);              \
		int r_ = (call);                       \
		assert_rejected(t, s_, r_, want, msg); \
	} while (0)

#endif
