/*
 * journal: the hook the DMA table (dma.c) and a device's interrupt state (irq.c) call around
 * each change they make, so that something else (the broker's state record, record.h) can keep
 * a copy that matches the kernel at every instant. dma.c and irq.c know nothing of the record's
 * format; the record knows nothing of their internals.
 *
 * Protocol, for every change:
 *   1. intent(op) before anything changes. For a change with a kernel call (DMA map, DMA unmap,
 *      SET_IRQS) the hook makes the intent durable before returning; for one without (an owner
 *      joining or leaving a shared mapping, forgetting the table) it only reserves what done()
 *      will need. A negative return refuses the change: nothing is done, and the caller fails
 *      the request with that error as it would a kernel error.
 *   2. the kernel call, if any.
 *   3. done(op, ok) once the outcome is known (ok: the change happened). done() cannot fail:
 *      intent() reserved everything it needs.
 * A NULL intent (the zero struct) means no journal: dma.c and irq.c behave as before.
 */
#ifndef VB_BROKER_JOURNAL_H
#define VB_BROKER_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

enum brk_jop_kind {
	BRK_JOP_DMA_MAP = 1,	 /* VFIO_IOMMU_MAP_DMA of a new mapping */
	BRK_JOP_DMA_UNMAP = 2,	 /* VFIO_IOMMU_UNMAP_DMA of a mapping's last owner */
	BRK_JOP_DMA_SHARE = 3,	 /* `owner` joins an identical mapping: no kernel call */
	BRK_JOP_DMA_UNSHARE = 4, /* `owner` leaves a mapping others still hold: no kernel call */
	BRK_JOP_DMA_FORGET = 5,	 /* every mapping dropped: the kernel already did */
	BRK_JOP_IRQ_SET = 6,	 /* VFIO_DEVICE_SET_IRQS on one index */
};

/* Longest journal key: a VM name (64) or a BDF (12), NUL included. */
#define BRK_JOURNAL_KEY_MAX 65

struct brk_jop {
	enum brk_jop_kind kind;
	uint64_t id; /* set by intent(), for the hook's own use in done() */
	/* DMA_*: the mapping (FORGET: none of these) */
	uint64_t owner;
	uint64_t iova;
	uint64_t size;
	uint64_t offset; /* MAP */
	uint32_t prot;	 /* MAP: BRK_DMA_PROT_* */
	uint64_t dev;	 /* MAP: the memfd's st_dev and st_ino */
	uint64_t ino;
	/* IRQ_SET: the index; in done(ok), its state after the call */
	uint32_t index;
	uint32_t irq_count;   /* vectors the index has */
	uint32_t irq_enabled; /* vectors it is enabled with; 0: off */
	bool irq_unmask_fd;
	const uint8_t *irq_trig; /* irq_count bytes, 1: the vector has a trigger eventfd */
};

struct brk_journal {
	void *ctx;
	char key[BRK_JOURNAL_KEY_MAX]; /* which object: the VM name (DMA), the BDF (IRQ) */
	int (*intent)(const struct brk_journal *j, struct brk_jop *op);
	void (*done)(const struct brk_journal *j, const struct brk_jop *op, bool ok);
};

static inline int brk_journal_intent(const struct brk_journal *j, struct brk_jop *op)
{
	return j->intent ? j->intent(j, op) : 0;
}

static inline void brk_journal_done(const struct brk_journal *j, const struct brk_jop *op, bool ok)
{
	if (j->intent)
		j->done(j, op, ok);
}

#endif
