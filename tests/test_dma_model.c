/*
 * test_dma_model: brk_dma (broker/dma.c) against the fake VFIO kernel (dma_env.c), as a whole:
 * random operations against a reference model, the journal hooks the state record is fed from
 * (intent before the ioctl, done after), a table restored from the record, the views a memfd is
 * pinned through, and the IOVA search. One call's rules are test_dma.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "dma.h"
#include "fake_vfio.h"
#include "record.h"
#include "test_memfd.h"
#include "dma_env.h"

/* A reference model of the table: a plain array searched linearly, owners as a bit set. */
struct ref_map {
	uint64_t iova, size, offset;
	uint32_t prot, owners;
	int file;
};

struct ref {
	struct ref_map m[64];
	uint32_t n;
	uint64_t pinned;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static int ref_map(struct ref *r, uint32_t owner, uint64_t iova, uint64_t size, uint64_t off,
		   uint32_t prot, int file, const struct brk_dma_limits *l)
{
	uint32_t i;

	for (i = 0; i < r->n; i++) {
		struct ref_map *m = &r->m[i];

		if (iova + size <= m->iova || m->iova + m->size <= iova)
			continue;
		if (m->iova == iova && m->size == size && m->offset == off && m->prot == prot &&
		    m->file == file && !(m->owners & (1u << owner))) {
			m->owners |= 1u << owner;
			return 0;
		}
		return -EEXIST;
	}
	if (r->n >= l->max_mappings)
		return -ENOSPC;
	if (r->pinned + size > l->max_pinned_bytes)
		return -EDQUOT;
	r->m[r->n++] = (struct ref_map){iova, size, off, prot, 1u << owner, file};
	r->pinned += size;
	return 0;
}

static void ref_remove(struct ref *r, uint32_t i)
{
	r->pinned -= r->m[i].size;
	r->m[i] = r->m[--r->n];
}

static int ref_unmap(struct ref *r, uint32_t owner, uint64_t iova, uint64_t size)
{
	uint32_t i;

	for (i = 0; i < r->n; i++) {
		if (r->m[i].iova != iova || r->m[i].size != size)
			continue;
		if (!(r->m[i].owners & (1u << owner)))
			return -EPERM;
		r->m[i].owners &= ~(1u << owner);
		if (!r->m[i].owners)
			ref_remove(r, i);
		return 0;
	}
	return -ENOENT;
}

static uint32_t ref_unmap_owner(struct ref *r, uint32_t owner)
{
	uint32_t i = 0, n = 0;

	while (i < r->n) {
		if (r->m[i].owners & (1u << owner)) {
			n++;
			r->m[i].owners &= ~(1u << owner);
			if (!r->m[i].owners) {
				ref_remove(r, i);
				continue;
			}
		}
		i++;
	}
	return n;
}

static void ref_usage(const struct ref *r, uint32_t owner, uint32_t *n, uint64_t *bytes)
{
	uint32_t i;

	*n = 0;
	*bytes = 0;
	for (i = 0; i < r->n; i++) {
		if (r->m[i].owners & (1u << owner)) {
			(*n)++;
			*bytes += r->m[i].size;
		}
	}
}

/* Random maps, unmaps and owner teardowns in a small IOVA window (so overlaps, shares and both
 * quotas happen often), each answer and every counter compared with the reference model. */
static void test_dma_random_ops_match_reference_model(void **state)
{
	struct brk_dma_limits l = {.max_mappings = 8, .max_pinned_bytes = 24 * PG};
	struct t *t = t_new(&l, 0);
	int files[2] = {t->memfd, test_memfd(MEMSZ, F_SEAL_SHRINK)};
	struct ref ref = {.n = 0};
	struct brk_dma_stats st;
	uint32_t op, o, n, rn;
	uint64_t bytes, rbytes;
	int r, want, seen[4] = {0};

	for (op = 0; op < 20000; op++) {
		uint32_t owner = 1 + rnd(4), kind = rnd(10);
		uint64_t iova = rnd(64) * PG, size = (1 + rnd(8)) * PG;

		if (kind < 6) {
			uint64_t off = rnd(3) * PG;
			uint32_t prot = 1 + rnd(3);
			int f = (int)rnd(2);

			want = ref_map(&ref, owner, iova, size, off, prot, f, &l);
			r = brk_dma_map(t->d, owner, iova, size, files[f], off, prot, &t->err);
			seen[0] += want == 0;
			seen[1] += want == -EEXIST;
			seen[2] += want == -ENOSPC || want == -EDQUOT;
		} else if (kind < 9) {
			/* Half of the unmaps aim at a mapping that exists. */
			if (ref.n && rnd(2)) {
				const struct ref_map *m = &ref.m[rnd(ref.n)];

				iova = m->iova;
				size = m->size;
			}
			want = ref_unmap(&ref, owner, iova, size);
			r = brk_dma_unmap(t->d, owner, iova, size, &t->err);
			seen[3] += want == 0;
		} else {
			want = (int)ref_unmap_owner(&ref, owner);
			r = brk_dma_unmap_owner(t->d, owner, &n, &bytes);
			assert_int_equal(r, 0);
			r = (int)n;
		}
		if (r != want)
			fail_msg(
			    "op %u kind %u owner %u iova 0x%llx size 0x%llx: got %d want %d (%s)",
			    op, kind, owner, (unsigned long long)iova, (unsigned long long)size, r,
			    want, t->err.msg);
		brk_dma_stats(t->d, &st);
		assert_int_equal(st.mappings, ref.n);
		assert_int_equal(st.pinned_bytes, ref.pinned);
		for (o = 1; o <= 4; o++) {
			brk_dma_owner_usage(t->d, o, &n, &bytes);
			ref_usage(&ref, o, &rn, &rbytes);
			assert_int_equal(n, rn);
			assert_int_equal(bytes, rbytes);
		}
	}
	/* Every kind of outcome was exercised, not just one. */
	print_message("# accepted %d, overlaps %d, quota %d, unmapped %d\n", seen[0], seen[1],
		      seen[2], seen[3]);
	assert_true(seen[0] > 100 && seen[1] > 100 && seen[2] > 100 && seen[3] > 100);
	assert_true(st.shares > 0);
	assert_int_equal(brk_dma_unmap_all(t->d, &n, &bytes), 0);
	assert_int_equal(n, ref.n);
	assert_int_equal(bytes, ref.pinned);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	close(files[1]);
	t_free(t);
}

/* ---- the journal (state record hooks) ------------------------------------------------------ */

/* What a journal saw: per call, the kind, whether it was intent or done (ok), and how many DMA
 * ioctls the fake kernel had seen at that moment. */
struct jlog {
	struct fake_vfio *f;
	int refuse; /* intent answers this when non-zero */
	unsigned n;
	struct {
		enum brk_jop_kind kind;
		char what; /* 'i' intent, '+' done ok, '-' done failed */
		unsigned ioctls;
		uint64_t id;
	} e[32];
};

static unsigned dma_ioctls(struct fake_vfio *f)
{
	return fake_vfio_count(f, VFIO_IOMMU_MAP_DMA) + fake_vfio_count(f, VFIO_IOMMU_UNMAP_DMA);
}

static int jlog_intent(const struct brk_journal *j, struct brk_jop *op)
{
	struct jlog *l = j->ctx;

	if (l->refuse)
		return l->refuse;
	op->id = 100 + l->n;
	l->e[l->n].kind = op->kind;
	l->e[l->n].what = 'i';
	l->e[l->n].id = op->id;
	l->e[l->n++].ioctls = dma_ioctls(l->f);
	return 0;
}

static void jlog_done(const struct brk_journal *j, const struct brk_jop *op, bool ok)
{
	struct jlog *l = j->ctx;

	l->e[l->n].kind = op->kind;
	l->e[l->n].what = ok ? '+' : '-';
	l->e[l->n].id = op->id;
	l->e[l->n++].ioctls = dma_ioctls(l->f);
}

static void assert_jlog(const struct jlog *l, unsigned i, enum brk_jop_kind kind, char what,
			unsigned ioctls)
{
	if (i >= l->n || l->e[i].kind != kind || l->e[i].what != what || l->e[i].ioctls != ioctls)
		fail_msg(
		    "journal entry %u: want kind %d %c after %u ioctls, got kind %d %c after %u "
		    "(of %u entries)",
		    i, kind, what, ioctls, i < l->n ? (int)l->e[i].kind : -1,
		    i < l->n ? l->e[i].what : '?', i < l->n ? l->e[i].ioctls : 0, l->n);
}

static void test_dma_journal_sees_intent_before_ioctl_and_done_after(void **state)
{
	struct jlog l = {0};
	struct brk_journal j = {.ctx = &l, .intent = jlog_intent, .done = jlog_done};
	struct t *t = t_new_j(NULL, 0, &j);
	struct snap before;

	(void)state;
	l.f = &t->f;
	map_ok(t, OWNER1, 0x100000, 4 * PG, 0);
	assert_jlog(&l, 0, BRK_JOP_DMA_MAP, 'i', 0);
	assert_jlog(&l, 1, BRK_JOP_DMA_MAP, '+', 1);
	assert_int_equal(l.e[1].id, l.e[0].id); /* done gets the op intent() filled */
	map_ok(t, OWNER2, 0x100000, 4 * PG, 0); /* joins: no kernel call */
	assert_jlog(&l, 2, BRK_JOP_DMA_SHARE, 'i', 1);
	assert_jlog(&l, 3, BRK_JOP_DMA_SHARE, '+', 1);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	assert_jlog(&l, 4, BRK_JOP_DMA_UNSHARE, 'i', 1);
	assert_jlog(&l, 5, BRK_JOP_DMA_UNSHARE, '+', 1);
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x100000, 4 * PG, &t->err), 0);
	assert_jlog(&l, 6, BRK_JOP_DMA_UNMAP, 'i', 1);
	assert_jlog(&l, 7, BRK_JOP_DMA_UNMAP, '+', 2);
	/* A kernel refusal: intent, the ioctl, done(false). */
	t->f.map_errs[0] = -ENOSPC;
	t->f.n_map_errs = 1;
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x100000, PG, t->memfd, 0, RW, &t->err),
			 -ENOSPC);
	assert_jlog(&l, 8, BRK_JOP_DMA_MAP, 'i', 2);
	assert_jlog(&l, 9, BRK_JOP_DMA_MAP, '-', 3);
	/* A journal that cannot write: the map fails with its error, the kernel sees nothing. */
	map_ok(t, OWNER1, 0x200000, PG, 0);
	l.refuse = -ENOSPC;
	before = snap(t);
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x300000, PG, t->memfd, 0, RW, &t->err),
			 -ENOSPC);
	assert_non_null(strstr(t->err.msg, "state record could not be written"));
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x200000, PG, &t->err), -ENOSPC);
	assert_int_equal(dma_ioctls(&t->f), before.maps + before.unmaps);
	assert_int_equal(snap(t).st.mappings, before.st.mappings);
	assert_int_equal(snap(t).st.pinned_bytes, before.st.pinned_bytes);
	l.refuse = 0;
	l.n = 0;
	brk_dma_forget_all(t->d, NULL, NULL);
	assert_jlog(&l, 0, BRK_JOP_DMA_FORGET, 'i', dma_ioctls(&t->f));
	assert_jlog(&l, 1, BRK_JOP_DMA_FORGET, '+', dma_ioctls(&t->f));
	t_free(t);
}

static void assert_same_table(struct brk_dma *a, struct brk_dma *b)
{
	static const uint64_t owners[] = {OWNER1, OWNER2, 33};
	struct brk_dma_stats sa, sb;
	uint32_t na, nb, i;
	uint64_t ba, bb;

	brk_dma_stats(a, &sa);
	brk_dma_stats(b, &sb);
	assert_int_equal(sa.mappings, sb.mappings);
	assert_int_equal(sa.pinned_bytes, sb.pinned_bytes);
	assert_int_equal(sa.maps, sb.maps);
	assert_int_equal(sa.unmaps, sb.unmaps);
	assert_int_equal(sa.shares, sb.shares);
	for (i = 0; i < 3; i++) {
		brk_dma_owner_usage(a, owners[i], &na, &ba);
		brk_dma_owner_usage(b, owners[i], &nb, &bb);
		assert_int_equal(na, nb);
		assert_int_equal(ba, bb);
	}
}

/* A table journaled into a real state record, then rebuilt from the loaded record with no kernel
 * call: same counts, pinned bytes, counters, sharing and quotas. */
static void test_dma_restore_from_record_rebuilds_identical_table(void **state)
{
	const struct brk_dma_limits lim = {.max_mappings = 4, .max_pinned_bytes = 32 * PG};
	struct brk_rec_vm vm = {.name = "vm1", .max_mappings = 4, .max_pinned_bytes = 32 * PG};
	struct brk_record *rec = NULL;
	struct brk_rec_state *st = NULL;
	const struct brk_rec_vm *lvm;
	struct brk_dma_stats counters;
	struct brk_journal j;
	struct t *t, *u;
	struct vb_err err = {0};
	unsigned ioctls;

	(void)state;
	assert_int_equal(brk_record_new(&rec, &err), 0);
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dma_journal(rec, "vm1", &j), 0);
	t = t_new_j(&lim, 0, &j);
	map_two(t);
	map_ok(t, 33, 0x100000, 4 * PG, 0); /* shared by OWNER1 and 33 */
	map_ok(t, OWNER2, 0x300000, PG, 0);
	map_ok(t, OWNER1, 0x400000, PG, 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x400000, PG, &t->err), 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err),
			 0); /* 33 keeps it */

	assert_int_equal(brk_record_load(brk_record_fd(rec), &st, &err), 0);
	lvm = brk_rec_state_vm(st, "vm1");
	assert_non_null(lvm);
	assert_int_equal(st->npending, 0);
	u = t_new(&lim, 0);
	ioctls = dma_ioctls(&u->f);
	counters =
	    (struct brk_dma_stats){.maps = lvm->maps, .unmaps = lvm->unmaps, .shares = lvm->shares};
	if (brk_dma_restore(u->d, lvm->map, lvm->nmaps, &counters, &err) != 0)
		fail_msg("restore: %s", err.msg);
	assert_int_equal(dma_ioctls(&u->f), ioctls);
	assert_same_table(t->d, u->d);
	assert_int_equal(brk_dma_restore(u->d, lvm->map, lvm->nmaps, &counters, &err), -EBUSY);
	/* The quota holds in the rebuilt table: 3 mappings of 4, one more fits, then no more. */
	map_ok(u, OWNER1, 0x500000, PG, 0);
	assert_int_equal(brk_dma_map(u->d, OWNER1, 0x600000, PG, u->memfd, 0, RW, &u->err),
			 -ENOSPC);
	/* Sharing survives: the shared mapping loses 33 without a kernel call, then goes. */
	ioctls = dma_ioctls(&u->f);
	assert_int_equal(brk_dma_unmap(u->d, OWNER1, 0x100000, 4 * PG, &u->err), -EPERM);
	assert_int_equal(brk_dma_unmap(u->d, 33, 0x100000, 4 * PG, &u->err), 0);
	assert_int_equal(dma_ioctls(&u->f), ioctls + 1);
	brk_rec_state_free(st);
	/* Tearing the VM down unmaps shared mappings whole: the record follows, and stays writable.
	 */
	map_ok(t, OWNER1, 0x300000, PG, 0); /* joins OWNER2's */
	assert_int_equal(brk_dma_unmap_all(t->d, NULL, NULL), 0);
	assert_int_equal(brk_record_load(brk_record_fd(rec), &st, &err), 0);
	assert_int_equal(brk_rec_state_vm(st, "vm1")->nmaps, 0);
	assert_int_equal(st->npending, 0);
	map_ok(t, OWNER1, 0x100000, PG, 0);
	brk_rec_state_free(st);
	t_free(u);
	t_free(t);
	brk_record_free(rec);
}

static void test_dma_restore_rejects_overlap_and_unaligned(void **state)
{
	struct brk_dma_mapping m[2] = {
	    {.iova = 0x100000, .size = 4 * PG, .prot = RW, .owner = 1},
	    {.iova = 0x102000, .size = PG, .prot = RW, .owner = 1},
	};
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	struct vb_err err = {0};

	(void)state;
	assert_int_equal(brk_dma_restore(t->d, m, 2, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "overlaps"));
	m[1].iova = 0x200800;
	assert_int_equal(brk_dma_restore(t->d, m, 2, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unaligned"));
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	t_free(t);
}

/* ---- views -------------------------------------------------------------------------------- */

/* The vaddr the kernel was given for the last map, and the byte there. */
static const struct fake_call *last_map(struct t *t)
{
	return fake_vfio_nth(&t->f, VFIO_IOMMU_MAP_DMA,
			     fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA) - 1);
}

static void put_marker(int fd, uint64_t off, char c)
{
	assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
}

static uint32_t views(struct t *t)
{
	struct brk_dma_stats st;

	brk_dma_stats(t->d, &st);
	return st.views;
}

static void test_dma_map_pins_from_one_view_per_memfd(void **state)
{
	struct t *t = t_new(NULL, 0);
	uint64_t va1, va2;

	put_marker(t->memfd, 0, 'a');
	put_marker(t->memfd, 8 * PG, 'b');
	map_ok(t, OWNER1, 0x100000, 4 * PG, 0);
	va1 = last_map(t)->vaddr;
	map_ok(t, OWNER2, 0x200000, 2 * PG, 8 * PG);
	va2 = last_map(t)->vaddr;
	/* The kernel pins the memfd's own pages at the requested offsets... */
	assert_int_equal(*(const char *)(uintptr_t)va1, 'a');
	assert_int_equal(*(const char *)(uintptr_t)va2, 'b');
	/* ...through one mapping of the file. */
	assert_int_equal(va2 - va1, 8 * PG);
	assert_int_equal(views(t), 1);
	t_free(t);
}

static void test_dma_view_goes_with_its_last_mapping(void **state)
{
	struct t *t = t_new(NULL, 0);
	uint64_t va;

	map_ok(t, OWNER1, 0x100000, 4 * PG, 0);
	va = last_map(t)->vaddr;
	map_ok(t, OWNER1, 0x200000, 4 * PG, 8 * PG);
	/* A section moves while the other stays mapped: the same view, its page tables filled. */
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	assert_int_equal(views(t), 1);
	map_ok(t, OWNER1, 0x300000, 4 * PG, 0);
	assert_int_equal(last_map(t)->vaddr, va);
	/* Nothing uses it any more: it goes, so it cannot keep memory the VMM freed alive. */
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x300000, 4 * PG, &t->err), 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x200000, 4 * PG, &t->err), 0);
	assert_int_equal(views(t), 0);
	map_ok(t, OWNER1, 0x100000, PG, 0);
	map_ok(t, OWNER2, 0x200000, PG, 0);
	assert_int_equal(brk_dma_unmap_owner(t->d, OWNER1, NULL, NULL), 0);
	assert_int_equal(views(t), 1);
	brk_dma_forget_all(t->d, NULL, NULL);
	assert_int_equal(views(t), 0);
	t_free(t);
}

/* A memfd nobody touched: the broker populates the range before the pin (the fake kernel pins
 * nothing, so whatever is resident afterwards the broker allocated). Large enough for several
 * populating threads on a machine with several CPUs, not a multiple of their slice. */
static void test_dma_map_populates_unpopulated_memfd(void **state)
{
	struct t *t = t_new(NULL, 0);
	uint64_t size = 2 * BRK_DMA_POPULATE_SLICE + 8 * PG;
	int fd = test_memfd(size, F_SEAL_SHRINK);
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x40000000, size, fd, 0, RW, &t->err), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 >= size);
	assert_int_equal(brk_dma_unmap_all(t->d, NULL, NULL), 0);
	close(fd);
	t_free(t);
}

static void test_dma_map_readonly_fd_then_writable_gets_own_view(void **state)
{
	struct t *t = t_new(NULL, 0);
	int ro;

	ro = reopen_memfd(t, O_RDONLY);
	put_marker(t->memfd, 2 * PG, 'r');
	assert_int_equal(
	    brk_dma_map(t->d, OWNER1, 0x100000, PG, ro, 2 * PG, BRK_DMA_PROT_READ, &t->err), 0);
	assert_int_equal(*(const char *)(uintptr_t)last_map(t)->vaddr, 'r');
	/* The read-only view cannot serve a write pin: a second, writable one does. */
	map_ok(t, OWNER1, 0x200000, PG, 2 * PG);
	assert_int_equal(*(const char *)(uintptr_t)last_map(t)->vaddr, 'r');
	assert_int_equal(views(t), 2);
	close(ro);
	t_free(t);
}

/* A VMM cannot spend the broker's mappings (vm.max_map_count): past BRK_DMA_VIEWS_MAX memfds a
 * map still works, from a mapping made for it alone. The same when a memfd in use grew. */
static void test_dma_map_beyond_views_max_or_grown_memfd_accepted(void **state)
{
	struct t *t = t_new(NULL, 0);
	int fds[BRK_DMA_VIEWS_MAX + 1];
	uint32_t i, n;

	for (i = 0; i < BRK_DMA_VIEWS_MAX + 1; i++) {
		fds[i] = test_memfd(PG, F_SEAL_SHRINK);
		assert_int_equal(
		    brk_dma_map(t->d, OWNER1, 0x100000 + i * PG, PG, fds[i], 0, RW, &t->err), 0);
	}
	assert_int_equal(views(t), BRK_DMA_VIEWS_MAX);
	assert_int_equal(brk_dma_unmap_all(t->d, &n, NULL), 0);
	assert_int_equal(n, BRK_DMA_VIEWS_MAX + 1);
	assert_int_equal(views(t), 0);
	for (i = 0; i < BRK_DMA_VIEWS_MAX + 1; i++)
		close(fds[i]);

	map_ok(t, OWNER1, 0x100000, PG, 0);
	assert_int_equal(ftruncate(t->memfd, 2 * MEMSZ), 0);
	put_marker(t->memfd, MEMSZ, 'g');
	map_ok(t, OWNER1, 0x200000, PG, MEMSZ);
	assert_int_equal(views(t), 1);
	assert_int_equal(snap(t).st.mappings, 2);
	t_free(t);
}

/* The IOVA search dma.c and the state record share: edges of an overlap on both sides, the
 * insertion index, and an exact find that a different size or a start inside misses. */
static void test_dma_iova_search_edges_and_exact_match(void **state)
{
	const struct brk_dma_mapping maps[] = {{.iova = 0x1000, .size = 0x1000},
					       {.iova = 0x4000, .size = 0x2000}};
	const size_t st = sizeof(maps[0]);
	uint32_t pos = 99;

	(void)state;

	assert_int_equal(brk_dma_iova_lower(maps, 2, st, 0), 0);
	assert_int_equal(brk_dma_iova_lower(maps, 2, st, 0x1000), 0);
	assert_int_equal(brk_dma_iova_lower(maps, 2, st, 0x1001), 1);
	assert_int_equal(brk_dma_iova_lower(maps, 2, st, 0x6000), 2);
	assert_int_equal(brk_dma_iova_lower(maps, 0, st, 0x1000), 0);
	/* The byte before the first entry and the byte after the last: free. */
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0, 0xfff, &pos), -1);
	assert_int_equal(pos, 0);
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0x6000, 0x6fff, &pos), -1);
	assert_int_equal(pos, 2);
	/* Between them: free, inserted at 1. */
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0x2000, 0x3fff, &pos), -1);
	assert_int_equal(pos, 1);
	/* Touching the last byte of the first, the first byte of the second. */
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0x1fff, 0x2fff, NULL), 0);
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0x3000, 0x4000, NULL), 1);
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0x5000, 0x5fff, NULL), 1);
	assert_int_equal(brk_dma_iova_overlap(maps, 2, st, 0, UINT64_MAX, NULL), 0);
	assert_int_equal(brk_dma_iova_find(maps, 2, st, 0x4000, 0x2000), 1);
	assert_int_equal(brk_dma_iova_find(maps, 2, st, 0x4000, 0x1000), -1);
	assert_int_equal(brk_dma_iova_find(maps, 2, st, 0x5000, 0x1000), -1);
	assert_int_equal(brk_dma_iova_find(maps, 2, st, 0x7000, 0x1000), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dma_journal_sees_intent_before_ioctl_and_done_after),
	    cmocka_unit_test(test_dma_restore_from_record_rebuilds_identical_table),
	    cmocka_unit_test(test_dma_restore_rejects_overlap_and_unaligned),
	    cmocka_unit_test(test_dma_iova_search_edges_and_exact_match),
	    cmocka_unit_test(test_dma_random_ops_match_reference_model),
	    cmocka_unit_test(test_dma_map_pins_from_one_view_per_memfd),
	    cmocka_unit_test(test_dma_view_goes_with_its_last_mapping),
	    cmocka_unit_test(test_dma_map_populates_unpopulated_memfd),
	    cmocka_unit_test(test_dma_map_readonly_fd_then_writable_gets_own_view),
	    cmocka_unit_test(test_dma_map_beyond_views_max_or_grown_memfd_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
