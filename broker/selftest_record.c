/*
 * selftest_record: the broker's state record (record.h) against the real kernel. A DMA table and
 * the device's interrupts are journaled into a record; a map is left in flight the way a broker
 * killed between its ioctl and the commit leaves it; then the record is taken over as a restarted
 * broker does: the pending map is resolved by unmapping exactly its range (the kernel must say it
 * held it), a new table and interrupt state are rebuilt from the record with no kernel call, and
 * the rebuilt table unmaps everything the kernel holds, to the kernel's count of zero.
 *
 * Trusts: the VFIO objects selftest.c opened.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "irq.h"
#include "record.h"
#include "selftest.h"

#define IOVA_A	   0x1000000ull
#define IOVA_B	   0x1100000ull
#define IOVA_CRASH 0x1200000ull

/* What a broker killed after VFIO_IOMMU_MAP_DMA and before the commit leaves: the intent in the
 * record, the mapping in the kernel. */
static int map_in_flight(struct ctx *x, const struct brk_journal *j, struct brk_jop *op)
{
	struct vfio_iommu_type1_dma_map m = {.argsz = sizeof(m),
					     .flags =
						 VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					     .iova = IOVA_CRASH,
					     .size = x->pg};
	void *va;
	int r;

	*op = (struct brk_jop){.kind = BRK_JOP_DMA_MAP,
			       .owner = OWNER_A,
			       .iova = IOVA_CRASH,
			       .size = x->pg,
			       .prot = RW};
	r = j->intent(j, op);
	if (r < 0)
		return r;
	va = mmap(NULL, x->pg, PROT_READ | PROT_WRITE, MAP_SHARED, x->memfd, 0);
	if (va == MAP_FAILED)
		return -errno;
	m.vaddr = (uint64_t)(uintptr_t)va;
	r = ioctl(brk_container_fd(x->c), VFIO_IOMMU_MAP_DMA, &m) < 0 ? -errno : 0;
	munmap(va, x->pg);
	return r;
}

/* The adopter's part for a pending map: unmap exactly its range. The kernel's answer says how
 * much it held there. */
static void resolve_pending_map(struct ctx *x, struct brk_record *rec)
{
	const struct brk_rec_state *st = brk_record_state(rec);
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof(u)};
	int r;

	check(st->npending == 1 && st->pending[0].kind == BRK_JOP_DMA_MAP &&
		  st->pending[0].iova == IOVA_CRASH && st->pending[0].size == x->pg,
	      "record_pending_map_loaded", "%u pending", st->npending);
	if (st->npending != 1)
		return;
	u.iova = st->pending[0].iova;
	u.size = st->pending[0].size;
	r = ioctl(brk_container_fd(x->c), VFIO_IOMMU_UNMAP_DMA, &u) < 0 ? -errno : 0;
	check(r == 0 && u.size == x->pg, "record_pending_map_was_in_kernel", "r=%d unmapped 0x%llx",
	      r, (unsigned long long)u.size);
	r = brk_record_resolve(rec, st->pending[0].id);
	check(r == 0 && st->npending == 0, "record_pending_map_resolved", "%d", r);
}

static struct brk_dma *restore_dma(struct ctx *x, const struct brk_rec_state *st)
{
	const struct brk_rec_vm *vm = brk_rec_state_vm(st, "selftest");
	struct brk_dma_stats counters = {0};
	struct brk_dma_cfg cfg = {0};
	struct vb_err err = {0};
	struct brk_dma *d = NULL;
	int r;

	if (!vm || brk_container_dma_cfg(x->c, &cfg) < 0 || brk_dma_new(&cfg, &d) < 0)
		return NULL;
	counters.maps = vm->maps;
	counters.unmaps = vm->unmaps;
	counters.shares = vm->shares;
	r = brk_dma_restore(d, vm->map, vm->nmaps, &counters, &err);
	check(r == 0, "record_dma_table_restored", "%d %s", r, err.msg);
	return d;
}

static void compare_dma(struct brk_dma *a, struct brk_dma *b)
{
	struct brk_dma_stats sa, sb;
	uint32_t na, nb;
	uint64_t ba, bb;

	brk_dma_stats(a, &sa);
	brk_dma_stats(b, &sb);
	brk_dma_owner_usage(a, OWNER_B, &na, &ba);
	brk_dma_owner_usage(b, OWNER_B, &nb, &bb);
	check(sa.mappings == sb.mappings && sa.pinned_bytes == sb.pinned_bytes &&
		  sa.maps == sb.maps && sa.shares == sb.shares && na == nb && ba == bb,
	      "record_dma_table_identical",
	      "mappings %u/%u pinned %" PRIu64 "/%" PRIu64 " maps %" PRIu64 "/%" PRIu64
	      " shares %" PRIu64 "/%" PRIu64 " owner B %u/%u",
	      sa.mappings, sb.mappings, sa.pinned_bytes, sb.pinned_bytes, sa.maps, sb.maps,
	      sa.shares, sb.shares, na, nb);
}

/* The first index past INTx that signals eventfds (MSI on edu, MSI-X on e1000e and nvme). */
static int irq_index(struct ctx *x)
{
	uint32_t i;

	for (i = 1; i < brk_vfio_dev_info(x->d)->num_irqs; i++) {
		const struct brk_irq_info *q = brk_vfio_dev_irq(x->d, i);

		if (q->count && (q->flags & VFIO_IRQ_INFO_EVENTFD))
			return (int)i;
	}
	return -1;
}

/* One vector with a trigger, through the journal; a fresh interrupt state rebuilt from the
 * record says the same. */
static void irq_roundtrip(struct ctx *x, struct brk_record *rec, const char *bdf)
{
	struct brk_irqs *live = brk_vfio_dev_irqs(x->d), *again = NULL;
	struct brk_irq_info infos[BRK_DEVICE_MAX_IRQS];
	const struct brk_rec_dev *rd;
	struct brk_irq_status a, b;
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};
	struct brk_journal j;
	int efd = eventfd(0, EFD_CLOEXEC), index = irq_index(x), r;
	struct brk_irq_req q = {.count = 1,
				.action = VFIO_IRQ_SET_ACTION_TRIGGER,
				.data = VFIO_IRQ_SET_DATA_EVENTFD,
				.fds = &efd,
				.nfds = 1};
	uint32_t i, n = brk_vfio_dev_info(x->d)->num_irqs;

	if (index < 0 || efd < 0 || n > BRK_DEVICE_MAX_IRQS) {
		printf("# no MSI/MSI-X index: interrupt part skipped\n");
		goto out;
	}
	q.index = (uint32_t)index;
	brk_record_irq_journal(rec, bdf, &j);
	brk_irqs_set_journal(live, &j);
	r = brk_irq_set(live, &q, &err);
	check(r == 0, "record_irq_set_journaled", "%d %s", r, err.msg);
	r = brk_record_load(brk_record_fd(rec), &st, &err);
	rd = r == 0 ? brk_rec_state_dev(st, bdf) : NULL;
	for (i = 0; i < n; i++)
		infos[i] = *brk_vfio_dev_irq(x->d, i);
	if (!rd || brk_irqs_new(NULL, brk_vfio_dev_fd(x->d), true, infos, n, &again) < 0) {
		check(false, "record_irq_restored", "load %d %s", r, err.msg);
		goto out;
	}
	for (i = 0, r = 0; i < BRK_REC_MAX_IRQS && r == 0; i++) {
		if (rd->irq[i] && rd->irq[i]->count)
			r = brk_irqs_restore(again, i, rd->irq[i]->count, rd->irq[i]->enabled,
					     rd->irq[i]->unmask_fd, rd->irq[i]->trig, &err);
	}
	brk_irq_status(live, q.index, &a);
	brk_irq_status(again, q.index, &b);
	check(r == 0 && a.enabled == 1 && a.enabled == b.enabled && a.triggers == b.triggers,
	      "record_irq_restored", "%d %s; enabled %u/%u triggers %u/%u", r, err.msg, a.enabled,
	      b.enabled, a.triggers, b.triggers);
	r = brk_irq_disable(live, q.index, &err);
	check(r == 0, "record_irq_disabled_journaled", "%d %s", r, err.msg);
out:
	brk_irqs_set_journal(live, NULL);
	brk_irqs_free(again);
	brk_rec_state_free(st);
	if (efd >= 0)
		close(efd);
}

void selftest_record(struct ctx *x, const char *bdf)
{
	struct brk_rec_vm vm = {.name = "selftest"};
	struct brk_rec_dev dev = {.vm = "selftest", .state = 3, .id = OWNER_A};
	struct brk_record *rec = NULL, *rec2 = NULL;
	struct brk_dma *journaled = NULL, *restored, *saved = x->dma;
	struct brk_dma_cfg cfg = {0};
	struct vb_err err = {0};
	struct brk_jop op;
	int r;

	snprintf(dev.bdf, sizeof(dev.bdf), "%s", bdf);
	r = brk_record_new(&rec, &err);
	if (r == 0)
		r = brk_record_vm_put(rec, &vm);
	if (r == 0)
		r = brk_record_dev_put(rec, &dev);
	if (r == 0)
		r = brk_container_dma_cfg(x->c, &cfg);
	if (r == 0)
		r = brk_record_dma_journal(rec, "selftest", &cfg.journal);
	if (r == 0)
		r = brk_dma_new(&cfg, &journaled);
	check(r == 0, "record_created", "%d %s", r, err.msg);
	if (r < 0)
		goto out;
	x->dma = journaled;
	map_ok(x, "record_dma_map_journaled", OWNER_A, IOVA_A, 4 * x->pg, 0);
	map_ok(x, "record_dma_map_second_owner", OWNER_B, IOVA_B, 2 * x->pg, 4 * x->pg);
	map_ok(x, "record_dma_map_shared", OWNER_B, IOVA_A, 4 * x->pg, 0);
	irq_roundtrip(x, rec, bdf);
	r = map_in_flight(x, &cfg.journal, &op);
	check(r == 0, "record_map_in_flight", "%d", r);

	/* The broker is gone; the next one adopts the memfd it finds in the fd store. */
	r = brk_record_adopt(brk_record_fd(rec), &rec2, &err);
	check(r == 0, "record_adopted", "%d %s", r, err.msg);
	if (r < 0)
		goto out;
	resolve_pending_map(x, rec2);
	restored = restore_dma(x, brk_record_state(rec2));
	if (restored) {
		compare_dma(journaled, restored);
		x->dma = restored;
		check_kernel_count(x, "record_restored_count_matches_kernel");
		r = brk_dma_unmap_all(restored, NULL, NULL);
		check(r == 0, "record_restored_table_unmaps_all", "%d", r);
		check_kernel_count(x, "record_restored_kernel_count_zero");
		brk_dma_free(restored);
	}
	/* The kernel holds nothing now: the old table forgets without asking it. */
	brk_dma_forget_all(journaled, NULL, NULL);
out:
	x->dma = saved;
	brk_dma_free(journaled);
	brk_record_free(rec2);
	brk_record_free(rec);
}
