/*
 * dma_env: the DMA table under test (dma_env.h).
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

struct t *t_new_j(const struct brk_dma_limits *limits, uint32_t flags, const struct brk_journal *j)
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

struct t *t_new(const struct brk_dma_limits *limits, uint32_t flags)
{
	return t_new_j(limits, flags, NULL);
}

void t_free(struct t *t)
{
	brk_dma_free(t->d);
	close(t->cfd);
	close(t->memfd);
	free(t);
}

void map_ok(struct t *t, uint64_t owner, uint64_t iova, uint64_t size, uint64_t off)
{
	int r = brk_dma_map(t->d, owner, iova, size, t->memfd, off, RW, &t->err);

	if (r != 0)
		fail_msg("map 0x%llx+0x%llx: %d %s", (unsigned long long)iova,
			 (unsigned long long)size, r, t->err.msg);
}

/* Two mappings so that "nothing lost" has something to lose. */
void map_two(struct t *t)
{
	map_ok(t, OWNER1, 0x100000, 4 * PG, 0);
	map_ok(t, OWNER2, 0x200000, 2 * PG, 4 * PG);
}

int reopen_memfd(const struct t *t, int flags)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->memfd);
	fd = open(path, flags | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

struct snap snap(const struct t *t)
{
	struct snap s;

	brk_dma_stats(t->d, &s.st);
	s.maps = fake_vfio_count(&t->f, VFIO_IOMMU_MAP_DMA);
	s.unmaps = fake_vfio_count(&t->f, VFIO_IOMMU_UNMAP_DMA);
	return s;
}

/* The call returned `want` with a message containing `msg`, and nothing changed: counters, the
 * kernel (no ioctl), and both mappings of map_two() are still there to be unmapped exactly. */
void assert_rejected(struct t *t, struct snap before, int r, int want, const char *msg)
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
