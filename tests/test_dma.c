/*
 * test_dma: brk_dma (broker/dma.c) against the fake VFIO kernel: every rejection leaves the
 * table, the counters and the kernel untouched; accepted mappings are accounted and every
 * teardown brings the counters back to zero; the EBUSY retry; kernel errors. The reference
 * model, the journal, the restore, the views and the IOVA search are test_dma_model.c's.
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

static void test_dma_map_rejects_not_a_memfd(void **state)
{
	struct t *t = t_new(NULL, BRK_DMA_ALLOW_UNSEALED);
	char path[] = "/tmp/test-dma-XXXXXX";
	int pipefd[2], efd, file;

	map_two(t);
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, pipefd[0], 0, RW, &t->err), -EACCES,
	       "must be a memfd");
	map_two(t);
	efd = eventfd(0, EFD_CLOEXEC);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, efd, 0, RW, &t->err), -EACCES,
	       "must be a memfd");
	map_two(t);
	file = mkostemp(path, O_CLOEXEC);
	assert_true(file >= 0);
	assert_int_equal(ftruncate(file, (off_t)MEMSZ), 0);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, file, 0, RW, &t->err), -EACCES,
	       "must be a memfd");
	unlink(path);
	close(file);
	close(efd);
	close(pipefd[0]);
	close(pipefd[1]);
	t_free(t);
}

static void test_dma_map_rejects_closed_fd(void **state)
{
	struct t *t = t_new(NULL, 0);
	int fd = test_memfd(MEMSZ, F_SEAL_SHRINK);

	close(fd);
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, fd, 0, RW, &t->err), -EBADF, "not open");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, -1, 0, RW, &t->err), -EBADF, "no memfd");
	t_free(t);
}

static void test_dma_map_rejects_unsealed_memfd(void **state)
{
	struct t *t = t_new(NULL, 0);
	int fd = test_memfd(MEMSZ, F_SEAL_GROW); /* a seal, but not the one that matters */

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, fd, 0, RW, &t->err), -EPERM,
	       "F_SEAL_SHRINK");
	close(fd);
	t_free(t);
}

static void test_dma_map_unsealed_memfd_allowed_by_flag_accepted(void **state)
{
	struct t *t = t_new(NULL, BRK_DMA_ALLOW_UNSEALED);
	int fd = test_memfd(MEMSZ, 0);
	struct brk_dma_stats st;

	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x400000, PG, fd, 0, RW, &t->err), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 1);
	close(fd);
	t_free(t);
}

static void test_dma_map_rejects_beyond_memfd(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, 2 * PG, t->memfd, MEMSZ - PG, RW, &t->err),
	       -ERANGE, "beyond the memfd");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, MEMSZ, RW, &t->err), -ERANGE,
	       "beyond the memfd");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, MEMSZ + PG, t->memfd, 0, RW, &t->err),
	       -ERANGE, "beyond the memfd");
	t_free(t);
}

static void test_dma_map_rejects_unaligned(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400800, PG, t->memfd, 0, RW, &t->err), -EINVAL,
	       "aligned");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG + 1, t->memfd, 0, RW, &t->err), -EINVAL,
	       "aligned");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0x10, RW, &t->err), -EINVAL,
	       "aligned");
	t_free(t);
}

static void test_dma_map_rejects_wrapping_iova(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, UINT64_MAX - PG + 1, 2 * PG, t->memfd, 0, RW, &t->err),
	       -EINVAL, "wraps");
	t_free(t);
}

static void test_dma_map_rejects_wrapping_offset(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(
	    t,
	    brk_dma_map(t->d, OWNER1, 0x400000, 2 * PG, t->memfd, UINT64_MAX - PG + 1, RW, &t->err),
	    -EINVAL, "wraps");
	t_free(t);
}

static void test_dma_map_top_of_iova_space_accepted(void **state)
{
	struct t *t = t_new(NULL, 0);

	/* Ends exactly at 2^64: the last byte is UINT64_MAX, nothing wraps. */
	map_ok(t, OWNER1, UINT64_MAX - 2 * PG + 1, 2 * PG, 0);
	map_ok(t, OWNER1, 0, PG, 0);
	assert_int_equal(
	    brk_dma_map(t->d, OWNER1, UINT64_MAX - PG + 1, PG, t->memfd, 0, RW, &t->err), -EEXIST);
	t_free(t);
}

static void test_dma_map_rejects_overlap(void **state)
{
	struct t *t = t_new(NULL, 0);

	/* map_two: [0x100000, 0x104000) and [0x200000, 0x202000). */
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x100000, 4 * PG, t->memfd, 0, RW, &t->err), -EEXIST,
	       "already mapped");
	/* Same range from another owner, but not the same memory view: an overlap. */
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, t->memfd, PG, RW, &t->err), -EEXIST,
	       "overlaps");
	map_two(t);
	REJECT(t,
	       brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, t->memfd, 0, BRK_DMA_PROT_READ, &t->err),
	       -EEXIST, "overlaps");
	map_two(t);
	{
		int other = test_memfd(MEMSZ, F_SEAL_SHRINK);

		REJECT(t, brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, other, 0, RW, &t->err),
		       -EEXIST, "overlaps");
		close(other);
	}
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x103000, 2 * PG, t->memfd, 0, RW, &t->err), -EEXIST,
	       "overlaps the mapping at 0x100000");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER2, 0xff000, 2 * PG, t->memfd, 0, RW, &t->err), -EEXIST,
	       "overlaps the mapping at 0x100000");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER2, 0x101000, PG, t->memfd, 0, RW, &t->err), -EEXIST,
	       "overlaps");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER2, 0x0, 0x300000, t->memfd, 0, RW, &t->err), -ERANGE,
	       "beyond"); /* too big for the memfd: refused before the overlap check */
	/* Adjacent on both sides is not an overlap. */
	map_two(t);
	map_ok(t, OWNER1, 0x104000, PG, 0);
	map_ok(t, OWNER1, 0xff000, PG, 0);
	t_free(t);
}

static void test_dma_map_identical_from_other_owner_shared(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;
	int again;

	map_two(t);
	/* The second device's VMM sends its own fd for the same memfd. */
	again = reopen_memfd(t, O_RDWR);
	assert_int_equal(brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, again, 0, RW, &t->err), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(st.pinned_bytes, 6 * PG);
	assert_int_equal(st.shares, 1);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA), 2);
	brk_dma_owner_usage(t->d, OWNER2, &n, &bytes);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 6 * PG);
	/* The first owner lets go: still mapped for the second, no kernel call. */
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), -EPERM);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(st.pinned_bytes, 6 * PG);
	/* The last owner's unmap reaches the kernel. */
	assert_int_equal(brk_dma_unmap_owner(t->d, OWNER2, &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 2);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	close(again);
	t_free(t);
}

static void test_dma_unmap_owner_of_shared_mapping_keeps_it(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;

	map_two(t);
	assert_int_equal(brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, t->memfd, 0, RW, &t->err), 0);
	assert_int_equal(
	    brk_dma_map(t->d, OWNER1 + 100, 0x100000, 4 * PG, t->memfd, 0, RW, &t->err), 0);
	assert_int_equal(brk_dma_unmap_owner(t->d, OWNER1, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 0);
	brk_dma_owner_usage(t->d, OWNER1 + 100, &n, NULL);
	assert_int_equal(n, 1);
	/* unmap_all releases shared mappings too, once each. */
	assert_int_equal(brk_dma_unmap_all(t->d, &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 6 * PG);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 2);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	t_free(t);
}

static void test_dma_map_rejects_over_mapping_quota(void **state)
{
	struct brk_dma_limits l = {.max_mappings = 3};
	struct t *t = t_new(&l, 0);

	map_ok(t, OWNER1, 0x0, PG, 0);
	map_two(t);
	{
		struct snap s = snap(t);
		int r = brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0, RW, &t->err);

		/* assert_rejected() unmaps map_two's pair; the first mapping stays counted. */
		assert_int_equal(r, -ENOSPC);
		assert_non_null(strstr(t->err.msg, "quota"));
		assert_int_equal(snap(t).st.mappings, s.st.mappings);
		assert_int_equal(snap(t).maps, s.maps);
	}
	/* Unmapping one makes room again. */
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x0, PG, &t->err), 0);
	map_ok(t, OWNER1, 0x400000, PG, 0);
	t_free(t);
}

static void test_dma_map_rejects_over_pinned_quota(void **state)
{
	struct brk_dma_limits l = {.max_pinned_bytes = 8 * PG};
	struct t *t = t_new(&l, 0);

	map_two(t); /* 6 pages */
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, 3 * PG, t->memfd, 0, RW, &t->err), -EDQUOT,
	       "quota");
	map_two(t);
	map_ok(t, OWNER1, 0x400000, 2 * PG, 0); /* exactly at the quota */
	t_free(t);
}

static void test_dma_map_rejects_outside_iova_ranges(void **state)
{
	struct brk_dma_cfg cfg = {.pgsize = PG, .n_ranges = 2};
	struct t *t = t_new(NULL, 0);

	/* Rebuild the table with the IOMMU's usable ranges: x86's MSI window is a hole. */
	brk_dma_free(t->d);
	cfg.sys = &t->f.sys;
	cfg.container_fd = t->cfd;
	cfg.ranges[0] = (struct brk_dma_range){0, 0xfedfffff};
	cfg.ranges[1] = (struct brk_dma_range){0xfef00000, (1ull << 39) - 1};
	assert_int_equal(brk_dma_new(&cfg, &t->d), 0);
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0xfee00000, PG, t->memfd, 0, RW, &t->err), -EINVAL,
	       "usable IOMMU range");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0xfedff000, 2 * PG, t->memfd, 0, RW, &t->err), -EINVAL,
	       "usable IOMMU range"); /* starts in one range, ends in the hole */
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 1ull << 39, PG, t->memfd, 0, RW, &t->err), -EINVAL,
	       "usable IOMMU range");
	map_two(t);
	map_ok(t, OWNER1, 0xfedff000, PG, 0);
	map_ok(t, OWNER1, 0xfef00000, PG, 0);
	map_ok(t, OWNER1, (1ull << 39) - PG, PG, 0);
	cfg.ranges[1].end = 0;
	assert_int_equal(brk_dma_new(&cfg, &(struct brk_dma *){NULL}), -EINVAL);
	t_free(t);
}

static void test_dma_map_rejects_unknown_prot(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0, 4, &t->err), -EINVAL,
	       "unknown DMA prot bits 0x4");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0, 0x80000001u, &t->err),
	       -EINVAL, "unknown DMA prot");
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0, 0, &t->err), -EINVAL,
	       "read, write or both");
	t_free(t);
}

static void test_dma_map_rejects_zero_size(void **state)
{
	struct t *t = t_new(NULL, 0);

	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, 0, t->memfd, 0, RW, &t->err), -EINVAL,
	       "size 0");
	t_free(t);
}

static void test_dma_map_rejects_write_on_readonly_fd(void **state)
{
	struct t *t = t_new(NULL, 0);
	int ro;

	ro = reopen_memfd(t, O_RDONLY);
	map_two(t);
	REJECT(t, brk_dma_map(t->d, OWNER1, 0x400000, PG, ro, 0, RW, &t->err), -EACCES,
	       "for writing");
	/* The device may still read it. */
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x400000, PG, ro, 0, BRK_DMA_PROT_READ, &t->err),
			 0);
	assert_int_equal(
	    fake_vfio_nth(&t->f, VFIO_IOMMU_MAP_DMA, fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA) - 1)
		->flags,
	    VFIO_DMA_MAP_FLAG_READ);
	close(ro);
	t_free(t);
}

static void test_dma_map_rejects_kernel_enospc(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct snap s;
	int r;

	map_two(t);
	t->f.map_errs[0] = -ENOSPC;
	t->f.n_map_errs = 1;
	s = snap(t);
	r = brk_dma_map(t->d, OWNER1, 0x400000, PG, t->memfd, 0, RW, &t->err);
	assert_int_equal(r, -ENOSPC);
	assert_non_null(strstr(t->err.msg, "dma_entry_limit"));
	assert_int_equal(snap(t).st.mappings, s.st.mappings);
	assert_int_equal(snap(t).st.pinned_bytes, s.st.pinned_bytes);
	assert_int_equal(snap(t).maps, s.maps + 1); /* the kernel was asked, once */
	/* The range is free for a later attempt. */
	map_ok(t, OWNER1, 0x400000, PG, 0);
	t_free(t);
}

static void test_dma_map_accepted_is_accounted_and_reaches_kernel(void **state)
{
	struct t *t = t_new(NULL, 0);
	const struct fake_call *c;
	struct brk_dma_stats st;

	map_ok(t, OWNER1, 0x100000, 4 * PG, 8 * PG);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 1);
	assert_int_equal(st.pinned_bytes, 4 * PG);
	assert_int_equal(st.maps, 1);
	c = fake_vfio_nth(&t->f, VFIO_IOMMU_MAP_DMA, 0);
	assert_non_null(c);
	assert_int_equal(c->fd, t->cfd);
	assert_int_equal(c->iova, 0x100000);
	assert_int_equal(c->size, 4 * PG);
	assert_int_equal(c->flags, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	assert_true(c->vaddr != 0 && c->vaddr % PG == 0);
	t_free(t);
}

static void test_dma_unmap_exact_returns_counters_to_zero(void **state)
{
	struct t *t = t_new(NULL, 0);
	const struct fake_call *c;
	struct brk_dma_stats st;

	map_two(t);
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x200000, 2 * PG, &t->err), 0);
	c = fake_vfio_nth(&t->f, VFIO_IOMMU_UNMAP_DMA, 0);
	assert_non_null(c);
	assert_int_equal(c->iova, 0x200000);
	assert_int_equal(c->size, 2 * PG);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	assert_int_equal(st.unmaps, 2);
	t_free(t);
}

static void test_dma_unmap_partial_or_unknown_range_rejected(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;

	map_two(t);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, PG, &t->err), -ENOENT);
	assert_non_null(strstr(t->err.msg, "unmap exactly"));
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x101000, 3 * PG, &t->err), -ENOENT);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x900000, PG, &t->err), -ENOENT);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(st.pinned_bytes, 6 * PG);
	t_free(t);
}

static void test_dma_unmap_other_owner_rejected(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;

	map_two(t);
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x100000, 4 * PG, &t->err), -EPERM);
	assert_non_null(strstr(t->err.msg, "another device"));
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 0);
	t_free(t);
}

static void test_dma_unmap_kernel_error_keeps_mapping(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;

	map_two(t);
	t->f.unmap_errs[0] = -EIO;
	t->f.n_unmap_errs = 1;
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), -EIO);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(st.pinned_bytes, 6 * PG);
	/* Still there, so a second attempt works. */
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	t_free(t);
}

static void test_dma_unmap_owner_only_that_owner(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;

	map_two(t);
	map_ok(t, OWNER1, 0x300000, PG, 0);
	map_ok(t, OWNER2, 0x50000, PG, 0);
	assert_int_equal(brk_dma_unmap_owner(t->d, OWNER1, &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 5 * PG);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 2);
	assert_int_equal(st.pinned_bytes, 3 * PG);
	brk_dma_owner_usage(t->d, OWNER1, &n, &bytes);
	assert_int_equal(n, 0);
	/* OWNER2's survive and are still findable (the table stayed sorted). */
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x50000, PG, &t->err), 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x200000, 2 * PG, &t->err), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	t_free(t);
}

static void test_dma_unmap_all_returns_counters_to_zero(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;

	map_two(t);
	map_ok(t, OWNER2, 0x50000, PG, 0);
	assert_int_equal(brk_dma_unmap_all(t->d, &n, &bytes), 0);
	assert_int_equal(n, 3);
	assert_int_equal(bytes, 7 * PG);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 3);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	/* The whole space is free again. */
	map_two(t);
	t_free(t);
}

static void test_dma_unmap_all_kernel_error_keeps_failed_entry(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;

	map_two(t);
	t->f.unmap_errs[0] = -EIO; /* the first (lowest iova) one fails */
	t->f.n_unmap_errs = 1;
	assert_int_equal(brk_dma_unmap_all(t->d, &n, NULL), -EIO);
	assert_int_equal(n, 1);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 1);
	assert_int_equal(st.pinned_bytes, 4 * PG);
	assert_int_equal(brk_dma_unmap_all(t->d, &n, NULL), 0);
	assert_int_equal(n, 1);
	t_free(t);
}

static void test_dma_forget_all_drops_records_without_kernel(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;

	map_two(t);
	assert_int_equal(brk_dma_map(t->d, OWNER2, 0x100000, 4 * PG, t->memfd, 0, RW, &t->err), 0);
	brk_dma_forget_all(t->d, &n, &bytes);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 6 * PG);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	/* The space is free again (a re-attached container starts empty). */
	map_two(t);
	t_free(t);
}

static void test_dma_map_ebusy_retried_once_after_unmap(void **state)
{
	struct t *t = t_new(NULL, 0);
	const struct fake_call *c;
	struct brk_dma_stats st;

	t->f.map_errs[0] = -EBUSY;
	t->f.n_map_errs = 1;
	map_ok(t, OWNER1, 0x100000, 2 * PG, 0);
	assert_int_equal(t->f.ncalls, 3);
	assert_int_equal(t->f.calls[0].req, VFIO_IOMMU_MAP_DMA);
	c = &t->f.calls[1];
	assert_int_equal(c->req, VFIO_IOMMU_UNMAP_DMA);
	assert_int_equal(c->iova, 0x100000);
	assert_int_equal(c->size, 2 * PG);
	assert_int_equal(t->f.calls[2].req, VFIO_IOMMU_MAP_DMA);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 1);
	assert_int_equal(st.ebusy_retries, 1);
	t_free(t);
}

static void test_dma_map_ebusy_twice_rejected(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;

	t->f.map_errs[0] = -EBUSY;
	t->f.map_errs[1] = -EBUSY;
	t->f.n_map_errs = 2;
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0x100000, PG, t->memfd, 0, RW, &t->err), -EBUSY);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA), 2);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA), 1);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	assert_int_equal(st.ebusy_retries, 0);
	t_free(t);
}

static void test_dma_new_bad_config_rejected(void **state)
{
	struct brk_dma_cfg cfg = {.pgsize = 3000, .container_fd = 0};
	struct brk_dma *d = (struct brk_dma *)0x1;

	assert_int_equal(brk_dma_new(&cfg, &d), -EINVAL);
	cfg.pgsize = 512;
	assert_int_equal(brk_dma_new(&cfg, &d), -EINVAL);
	cfg.pgsize = PG;
	cfg.container_fd = -1;
	assert_int_equal(brk_dma_new(&cfg, &d), -EINVAL);
	cfg.container_fd = 0;
	cfg.flags = 0x80;
	assert_int_equal(brk_dma_new(&cfg, &d), -EINVAL);
	assert_ptr_equal(d, (struct brk_dma *)0x1);
}

/* 65535 mappings at descending IOVAs (each insert at the front: the sorted table's worst case),
 * then lookups, one unmap in the middle and the whole teardown. Guards the table's complexity:
 * a linear scan per map would still pass, but slowly; the timing is printed for the record. */
static void test_dma_map_full_table_counts_stay_exact(void **state)
{
	struct t *t = t_new(NULL, 0);
	struct brk_dma_stats st;
	struct timespec a, b;
	uint32_t i, n, max = BRK_DMA_DEFAULT_MAX_MAPPINGS;
	uint64_t bytes;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 0; i < max; i++)
		map_ok(t, OWNER1 + (i & 1), (uint64_t)(max - i) * 2 * PG, PG, 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	print_message("# %u maps in %.1f ms\n", max,
		      (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, max);
	assert_int_equal(st.pinned_bytes, (uint64_t)max * PG);
	assert_int_equal(brk_dma_map(t->d, OWNER1, 0, PG, t->memfd, 0, RW, &t->err), -ENOSPC);
	assert_int_equal(brk_dma_map(t->d, OWNER1, 1000 * 2 * PG, PG, t->memfd, PG, RW, &t->err),
			 -EEXIST);
	assert_int_equal(
	    brk_dma_unmap(t->d, OWNER1 + ((max - 1000) & 1), 1000 * 2 * PG, PG, &t->err), 0);
	assert_int_equal(brk_dma_unmap_owner(t->d, OWNER1, &n, &bytes), 0);
	assert_int_equal(brk_dma_unmap_all(t->d, &n, &bytes), 0);
	brk_dma_stats(t->d, &st);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.pinned_bytes, 0);
	t_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dma_map_rejects_not_a_memfd),
	    cmocka_unit_test(test_dma_map_rejects_closed_fd),
	    cmocka_unit_test(test_dma_map_rejects_unsealed_memfd),
	    cmocka_unit_test(test_dma_map_unsealed_memfd_allowed_by_flag_accepted),
	    cmocka_unit_test(test_dma_map_rejects_beyond_memfd),
	    cmocka_unit_test(test_dma_map_rejects_unaligned),
	    cmocka_unit_test(test_dma_map_rejects_wrapping_iova),
	    cmocka_unit_test(test_dma_map_rejects_wrapping_offset),
	    cmocka_unit_test(test_dma_map_top_of_iova_space_accepted),
	    cmocka_unit_test(test_dma_map_rejects_overlap),
	    cmocka_unit_test(test_dma_map_identical_from_other_owner_shared),
	    cmocka_unit_test(test_dma_unmap_owner_of_shared_mapping_keeps_it),
	    cmocka_unit_test(test_dma_map_rejects_over_mapping_quota),
	    cmocka_unit_test(test_dma_map_rejects_over_pinned_quota),
	    cmocka_unit_test(test_dma_map_rejects_outside_iova_ranges),
	    cmocka_unit_test(test_dma_map_rejects_unknown_prot),
	    cmocka_unit_test(test_dma_map_rejects_zero_size),
	    cmocka_unit_test(test_dma_map_rejects_write_on_readonly_fd),
	    cmocka_unit_test(test_dma_map_rejects_kernel_enospc),
	    cmocka_unit_test(test_dma_map_accepted_is_accounted_and_reaches_kernel),
	    cmocka_unit_test(test_dma_unmap_exact_returns_counters_to_zero),
	    cmocka_unit_test(test_dma_unmap_partial_or_unknown_range_rejected),
	    cmocka_unit_test(test_dma_unmap_other_owner_rejected),
	    cmocka_unit_test(test_dma_unmap_kernel_error_keeps_mapping),
	    cmocka_unit_test(test_dma_unmap_owner_only_that_owner),
	    cmocka_unit_test(test_dma_unmap_all_returns_counters_to_zero),
	    cmocka_unit_test(test_dma_unmap_all_kernel_error_keeps_failed_entry),
	    cmocka_unit_test(test_dma_forget_all_drops_records_without_kernel),
	    cmocka_unit_test(test_dma_map_ebusy_retried_once_after_unmap),
	    cmocka_unit_test(test_dma_map_ebusy_twice_rejected),
	    cmocka_unit_test(test_dma_new_bad_config_rejected),
	    cmocka_unit_test(test_dma_map_full_table_counts_stay_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
