/*
 * test_dma: brk_dma (broker/dma.c) against the fake VFIO kernel: every rejection leaves the
 * table, the counters and the kernel untouched; accepted mappings are accounted and every
 * teardown brings the counters back to zero; the EBUSY retry; kernel errors.
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

static struct t *t_new_j(const struct brk_dma_limits *limits, uint32_t flags,
			 const struct brk_journal *j)
{
	struct t *t = calloc(1, sizeof(*t));
	struct brk_dma_cfg cfg = {.pgsize = PG, .flags = flags};

	assert_non_null(t);
	fake_vfio_init(&t->f);
	t->cfd = eventfd(0, EFD_CLOEXEC);
	assert_true(t->cfd >= 0);
	cfg.sys = &t->f.sys;
	cfg.container_fd = t->cfd;
	if (limits)
		cfg.limits = *limits;
	if (j)
		cfg.journal = *j;
	assert_int_equal(brk_dma_new(&cfg, &t->d), 0);
	t->memfd = test_memfd(MEMSZ, F_SEAL_SHRINK);
	return t;
}

static struct t *t_new(const struct brk_dma_limits *limits, uint32_t flags)
{
	return t_new_j(limits, flags, NULL);
}

static void t_free(struct t *t)
{
	brk_dma_free(t->d);
	close(t->cfd);
	close(t->memfd);
	free(t);
}

static void map_ok(struct t *t, uint64_t owner, uint64_t iova, uint64_t size, uint64_t off)
{
	int r = brk_dma_map(t->d, owner, iova, size, t->memfd, off, RW, &t->err);

	if (r != 0)
		fail_msg("map 0x%llx+0x%llx: %d %s", (unsigned long long)iova,
			 (unsigned long long)size, r, t->err.msg);
}

/* Two mappings so that "nothing lost" has something to lose. */
static void map_two(struct t *t)
{
	map_ok(t, OWNER1, 0x100000, 4 * PG, 0);
	map_ok(t, OWNER2, 0x200000, 2 * PG, 4 * PG);
}

struct snap {
	struct brk_dma_stats st;
	unsigned maps, unmaps;
};

static struct snap snap(const struct t *t)
{
	struct snap s;

	brk_dma_stats(t->d, &s.st);
	s.maps = fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA);
	s.unmaps = fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA);
	return s;
}

/* The call returned `want` with a message containing `msg`, and nothing changed: counters, the
 * kernel (no ioctl), and both mappings of map_two() are still there to be unmapped exactly. */
static void assert_rejected(struct t *t, struct snap before, int r, int want, const char *msg)
{
	struct snap after = snap(t);
	uint32_t n1, n2;
	uint64_t b1, b2;

	assert_int_equal(r, want);
	assert_int_equal(t->err.code, want);
	if (!strstr(t->err.msg, msg))
		fail_msg("message \"%s\" lacks \"%s\"", t->err.msg, msg);
	assert_int_equal(after.st.mappings, before.st.mappings);
	assert_int_equal(after.st.pinned_bytes, before.st.pinned_bytes);
	assert_int_equal(after.st.rejects, before.st.rejects + 1);
	assert_int_equal(after.maps, before.maps);
	assert_int_equal(after.unmaps, before.unmaps);
	brk_dma_owner_usage(t->d, OWNER1, &n1, &b1);
	brk_dma_owner_usage(t->d, OWNER2, &n2, &b2);
	assert_int_equal(n1 + n2, before.st.mappings);
	assert_int_equal(b1 + b2, before.st.pinned_bytes);
	assert_int_equal(brk_dma_unmap(t->d, OWNER1, 0x100000, 4 * PG, &t->err), 0);
	assert_int_equal(brk_dma_unmap(t->d, OWNER2, 0x200000, 2 * PG, &t->err), 0);
	brk_dma_stats(t->d, &after.st);
	assert_int_equal(after.st.mappings, 0);
	assert_int_equal(after.st.pinned_bytes, 0);
}

#define REJECT(t, call, want, msg)                     \
	do {                                           \
		struct snap s_ = snap(t);              \
		int r_ = (call);                       \
		assert_rejected(t, s_, r_, want, msg); \
	} while (0)

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
	char path[64];
	struct brk_dma_stats st;
	uint32_t n;
	uint64_t bytes;
	int again;

	map_two(t);
	/* The second device's VMM sends its own fd for the same memfd. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->memfd);
	again = open(path, O_RDWR | O_CLOEXEC);
	assert_true(again >= 0);
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
	char path[64];
	int ro;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->memfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
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
	char path[64];
	int ro;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->memfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
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
	    cmocka_unit_test(test_dma_random_ops_match_reference_model),
	    cmocka_unit_test(test_dma_map_pins_from_one_view_per_memfd),
	    cmocka_unit_test(test_dma_view_goes_with_its_last_mapping),
	    cmocka_unit_test(test_dma_map_populates_unpopulated_memfd),
	    cmocka_unit_test(test_dma_map_readonly_fd_then_writable_gets_own_view),
	    cmocka_unit_test(test_dma_map_beyond_views_max_or_grown_memfd_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
