/*
 * vfio-broker-selftest: drives the broker's VFIO core against the real kernel, for the guest
 * tests. Given the BDF of a device bound to vfio-pci it opens container, group and device through
 * the core's API, prints what the kernel reports, maps a memfd, runs every DMA rejection case of
 * the host tests against the real container (same errno expected), checks the kernel's own count
 * of mappings against ours, unmaps, checks that the counters return to zero, and resets the
 * device. It programs nothing else (no interrupts, no device registers).
 *
 * Output is TAP ("ok N - name", "not ok N - name: why"), information lines start with "# ".
 * Exit status: 0 every check passed, 1 a check failed, 2 usage or setup error.
 *
 * Trusts: its command line (it is a test tool run as root); everything else goes through the
 * core's validation like any broker request.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "bind.h"
#include "device_pb.h"
#include "dma.h"
#include "irq.h"
#include "selftest.h"
#include "vfio.h"

static unsigned n_checks, n_failed;

void check(bool ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	if (ok) {
		printf("ok %u - %s\n", n_checks, name);
		return;
	}
	n_failed++;
	printf("not ok %u - %s: ", n_checks, name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void print_device(struct brk_vfio_dev *d)
{
	const struct brk_vfio_dev_info *di = brk_vfio_dev_info(d);
	uint32_t i, j;

	printf("# device %s: flags 0x%x%s%s, %u regions, %u irq indexes\n", brk_vfio_dev_bdf(d),
	       di->flags, di->flags & VFIO_DEVICE_FLAGS_PCI ? " pci" : "",
	       di->flags & VFIO_DEVICE_FLAGS_RESET ? " reset" : "", di->num_regions, di->num_irqs);
	for (i = 0; i < di->num_regions; i++) {
		const struct brk_region *r = brk_vfio_dev_region(d, i);

		if (!r->present)
			continue;
		printf("# region %u: flags 0x%x size 0x%" PRIx64 " offset 0x%" PRIx64 "%s%s%s\n", i,
		       r->flags, r->size, r->offset,
		       r->flags & VFIO_REGION_INFO_FLAG_MMAP ? " mmap" : "",
		       r->msix_mappable ? " msix-mappable" : "", r->has_sparse ? " sparse:" : "");
		for (j = 0; j < r->n_areas; j++)
			printf("#   area 0x%" PRIx64 "+0x%" PRIx64 "\n", r->areas[j].offset,
			       r->areas[j].size);
	}
	for (i = 0; i < di->num_irqs; i++) {
		const struct brk_irq_info *q = brk_vfio_dev_irq(d, i);

		printf("# irq %u: flags 0x%x count %u\n", i, q->flags, q->count);
	}
}

int make_memfd(uint64_t size, int seals)
{
	int fd = memfd_create("vfio-broker-selftest", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)) {
		perror("memfd");
		exit(2);
	}
	return fd;
}

void stats(const struct ctx *x, uint32_t *n, uint64_t *bytes)
{
	struct brk_dma_stats st;

	brk_dma_stats(x->dma, &st);
	*n = st.mappings;
	*bytes = st.pinned_bytes;
}

/* Our count of mappings must equal what the kernel says it holds for this container. */
void check_kernel_count(struct ctx *x, const char *name)
{
	uint32_t n, avail;
	uint64_t bytes;
	int r;

	if (!x->have_avail)
		return;
	stats(x, &n, &bytes);
	r = brk_container_dma_avail(x->c, &avail);
	check(r == 0 && x->avail0 - avail == n, name,
	      "r=%d kernel holds %u mappings, broker counts %u", r, x->avail0 - avail, n);
}

/* One rejection case: the errno the host tests expect, a message, nothing changed. */
static void reject(struct ctx *x, const char *name, int want, uint64_t iova, uint64_t size, int fd,
		   uint64_t off, uint32_t prot)
{
	struct vb_err err = {0};
	uint32_t n0, n1;
	uint64_t b0, b1;
	int r;

	stats(x, &n0, &b0);
	r = brk_dma_map(x->dma, OWNER_A, iova, size, fd, off, prot, &err);
	stats(x, &n1, &b1);
	check(r == want && err.code == want && err.msg[0] && n1 == n0 && b1 == b0, name,
	      "got %d (%s), want %d; mappings %u -> %u, pinned %" PRIu64 " -> %" PRIu64, r, err.msg,
	      want, n0, n1, b0, b1);
	if (r == want)
		printf("#   %s\n", err.msg);
	else if (r == 0)
		brk_dma_unmap(x->dma, OWNER_A, iova, size, NULL);
}

void map_ok(struct ctx *x, const char *name, uint64_t owner, uint64_t iova, uint64_t size,
	    uint64_t off)
{
	struct vb_err err = {0};
	int r = brk_dma_map(x->dma, owner, iova, size, x->memfd, off, RW, &err);

	check(r == 0, name, "%d %s", r, err.msg);
}

static void dma_rejects(struct ctx *x)
{
	const uint64_t pg = x->pg, top = UINT64_MAX - pg + 1;
	int p[2], efd, ro;
	char path[64];

	if (pipe2(p, O_CLOEXEC) < 0 || (efd = eventfd(0, EFD_CLOEXEC)) < 0)
		exit(2);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", x->memfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		exit(2);
	reject(x, "dma_map_rejects_not_a_memfd", -EACCES, 0x800000, pg, p[0], 0, RW);
	reject(x, "dma_map_rejects_not_a_memfd_eventfd", -EACCES, 0x800000, pg, efd, 0, RW);
	reject(x, "dma_map_rejects_closed_fd", -EBADF, 0x800000, pg, -1, 0, RW);
	reject(x, "dma_map_rejects_unsealed_memfd", -EPERM, 0x800000, pg, x->memfd_unsealed, 0, RW);
	reject(x, "dma_map_rejects_beyond_memfd", -ERANGE, 0x800000, 2 * pg, x->memfd, 63 * pg, RW);
	reject(x, "dma_map_rejects_unaligned_iova", -EINVAL, 0x800000 + pg / 2, pg, x->memfd, 0,
	       RW);
	reject(x, "dma_map_rejects_unaligned_size", -EINVAL, 0x800000, pg + 1, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_unaligned_offset", -EINVAL, 0x800000, pg, x->memfd, 16, RW);
	reject(x, "dma_map_rejects_wrapping_iova", -EINVAL, top, 2 * pg, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_wrapping_offset", -EINVAL, 0x800000, 2 * pg, x->memfd, top, RW);
	reject(x, "dma_map_rejects_overlap", -EEXIST, 0x100000 + pg, 4 * pg, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_overlap_below", -EEXIST, 0x100000 - pg, 2 * pg, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_msi_window", -EINVAL, 0xfee00000, pg, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_unknown_prot", -EINVAL, 0x800000, pg, x->memfd, 0, 4);
	reject(x, "dma_map_rejects_no_prot", -EINVAL, 0x800000, pg, x->memfd, 0, 0);
	reject(x, "dma_map_rejects_zero_size", -EINVAL, 0x800000, 0, x->memfd, 0, RW);
	reject(x, "dma_map_rejects_write_on_readonly_fd", -EACCES, 0x800000, pg, ro, 0, RW);
	/* Mapping quota is 4 (set in main): two more fill it. */
	map_ok(x, "dma_map_third_accepted", OWNER_A, 0x300000, pg, 0);
	map_ok(x, "dma_map_fourth_accepted", OWNER_B, 0x400000, pg, 0);
	reject(x, "dma_map_rejects_over_mapping_quota", -ENOSPC, 0x800000, pg, x->memfd, 0, RW);
	check_kernel_count(x, "dma_kernel_count_matches_after_rejects");
	close(ro);
	close(efd);
	close(p[0]);
	close(p[1]);
}

/* An IOVA far outside the IOMMU's aperture: refused with the kernel's own errno (by the broker
 * when the kernel reported its usable ranges, else by the kernel), the table unchanged. */
static void aperture_reject(struct ctx *x)
{
	struct vb_err err = {0};
	uint32_t n0, n1;
	uint64_t b0, b1;
	int r;

	if (brk_dma_unmap(x->dma, OWNER_B, 0x400000, x->pg, &err) < 0)
		check(false, "dma_unmap_for_room", "%s", err.msg);
	stats(x, &n0, &b0);
	r = brk_dma_map(x->dma, OWNER_A, 1ull << 62, x->pg, x->memfd, 0, RW, &err);
	stats(x, &n1, &b1);
	check(r == -EINVAL && n0 == n1 && b0 == b1, "dma_map_rejects_outside_iova_ranges",
	      "got %d, mappings %u -> %u", r, n0, n1);
	if (r < 0)
		printf("#   %d: %s\n", r, err.msg);
	else
		brk_dma_unmap(x->dma, OWNER_A, 1ull << 62, x->pg, NULL);
}

static void pinned_quota(struct ctx *x)
{
	struct brk_dma_limits l = {.max_mappings = 4, .max_pinned_bytes = 8 * x->pg};
	uint32_t n;
	uint64_t b;

	/* 4 + 2 + 1 pages pinned now; 8 allowed. */
	brk_dma_set_limits(x->dma, &l);
	stats(x, &n, &b);
	reject(x, "dma_map_rejects_over_pinned_quota", -EDQUOT, 0x800000, 2 * x->pg, x->memfd, 0,
	       RW);
	map_ok(x, "dma_map_up_to_pinned_quota_accepted", OWNER_B, 0x800000, x->pg, 0);
	check_kernel_count(x, "dma_kernel_count_matches_at_quota");
}

static void teardown_dma(struct ctx *x)
{
	struct vb_err err = {0};
	uint32_t n, cnt;
	uint64_t b, bytes;
	int r;

	r = brk_dma_unmap(x->dma, OWNER_A, 0x100000, 2 * x->pg, &err);
	check(r == -ENOENT, "dma_unmap_partial_rejected", "got %d", r);
	r = brk_dma_unmap(x->dma, OWNER_B, 0x100000, 4 * x->pg, &err);
	check(r == -EPERM, "dma_unmap_other_owner_rejected", "got %d", r);
	/* A second device of the VM maps the same RAM: it joins the mapping. */
	map_ok(x, "dma_map_identical_other_owner_shared", OWNER_B, 0x100000, 4 * x->pg, 0);
	check_kernel_count(x, "dma_kernel_count_unchanged_by_share");
	r = brk_dma_unmap(x->dma, OWNER_A, 0x100000, 4 * x->pg, &err);
	check(r == 0, "dma_unmap_exact", "%d %s", r, err.msg);
	check_kernel_count(x, "dma_kernel_keeps_shared_mapping");
	r = brk_dma_unmap_owner(x->dma, OWNER_B, &cnt, &bytes);
	check(r == 0 && cnt == 3 && bytes == 7 * x->pg, "dma_unmap_owner",
	      "r=%d %u mappings %" PRIu64 " bytes", r, cnt, bytes);
	check_kernel_count(x, "dma_kernel_count_matches_after_unmap_owner");
	r = brk_dma_unmap_all(x->dma, &cnt, &bytes);
	stats(x, &n, &b);
	check(r == 0 && cnt == 1 && n == 0 && b == 0, "dma_unmap_all_counters_zero",
	      "r=%d unmapped %u, left %u mappings %" PRIu64 " bytes", r, cnt, n, b);
	check_kernel_count(x, "dma_kernel_count_zero_after_teardown");
}

static void irq_rejects(struct ctx *x)
{
	struct brk_irqs *irqs = brk_vfio_dev_irqs(x->d);
	int p[2], r;
	struct vb_err err = {0};
	struct brk_irq_req q = {.index = 99,
				.count = 1,
				.action = VFIO_IRQ_SET_ACTION_TRIGGER,
				.data = VFIO_IRQ_SET_DATA_EVENTFD,
				.nfds = 1};

	uint32_t i;

	if (pipe2(p, O_CLOEXEC) < 0)
		exit(2);
	q.fds = p;
	r = brk_irq_set(irqs, &q, &err);
	check(r == -EINVAL, "irq_set_rejects_unknown_index", "got %d", r);
	/* The first index that signals eventfds (MSI on edu, MSI-X on nvme). */
	for (i = brk_vfio_dev_info(x->d)->num_irqs; i-- > 0;) {
		const struct brk_irq_info *ii = brk_vfio_dev_irq(x->d, i);

		if (ii->count && (ii->flags & VFIO_IRQ_INFO_EVENTFD))
			q.index = i;
	}
	r = brk_irq_set(irqs, &q, &err);
	check(r == -EACCES, "irq_set_rejects_non_eventfd", "got %d %s", r, err.msg);
	q.start = UINT32_MAX;
	r = brk_irq_set(irqs, &q, &err);
	check(r == -EINVAL, "irq_set_rejects_start_overflow", "got %d", r);
	close(p[0]);
	close(p[1]);
}

static int open_all(struct ctx *x, const char *bdf, bool bind)
{
	struct vb_err err = {0};
	uint32_t grp, i;
	int r;

	if (bind && (r = brk_bind_vfio(NULL, bdf, &err)) < 0) {
		printf("# bind: %s\n", err.msg);
		return r;
	}
	r = brk_bind_iommu_group(NULL, bdf, &grp, &err);
	if (r == 0)
		r = brk_container_new(NULL, &err, &x->c);
	if (r == 0) {
		printf("# %s\n", brk_container_backend_note(x->c));
		r = brk_group_open(NULL, grp, &err, &x->g);
	}
	if (r == 0)
		r = brk_group_attach(x->g, x->c, &err);
	if (r == 0)
		r = brk_vfio_dev_open(x->g, bdf, &err, &x->d);
	if (r < 0) {
		printf("# setup: %s\n", err.msg);
		return r;
	}
	printf("# group %u, backend %s, iova_pgsizes 0x%" PRIx64 ", min page 0x%" PRIx64
	       ", dma_avail %u\n",
	       grp, brk_container_backend_name(x->c), brk_container_info(x->c)->iova_pgsizes,
	       brk_container_info(x->c)->min_pgsize, brk_container_info(x->c)->dma_avail);
	for (i = 0; i < brk_container_info(x->c)->n_iova_ranges; i++)
		printf("# usable iova 0x%" PRIx64 "-0x%" PRIx64 "\n",
		       brk_container_info(x->c)->iova_ranges[i].start,
		       brk_container_info(x->c)->iova_ranges[i].end);
	return 0;
}

static void check_handoff(struct ctx *x)
{
	struct brk_vfio_dev_pb pb;
	uint32_t i, present = 0;
	int r;

	for (i = 0; i < brk_vfio_dev_info(x->d)->num_regions; i++)
		present += brk_vfio_dev_region(x->d, i)->present;
	r = brk_vfio_dev_pb_fill(x->d, &pb);
	check(r == 0 && pb.n_regions == present && pb.n_irqs == brk_vfio_dev_info(x->d)->num_irqs,
	      "device_handoff_tables", "r=%d %zu regions (want %u), %zu irqs", r, pb.n_regions,
	      present, pb.n_irqs);
	if (r == 0)
		brk_vfio_dev_pb_release(&pb);
}

/* A second device of the same VM: its group joins the first one's container (the IOMMU type is
 * not chosen again), its device opens, and it sees the container's mappings by construction. */
static void second_device(struct ctx *x, const char *bdf2)
{
	struct brk_group *g2 = NULL;
	struct brk_vfio_dev *d2 = NULL;
	struct vb_err err = {0};
	enum brk_iommu_type type = brk_container_info(x->c)->type;
	uint32_t grp;
	int r;

	r = brk_bind_iommu_group(NULL, bdf2, &grp, &err);
	if (r == 0)
		r = brk_group_open(NULL, grp, &err, &g2);
	if (r == 0)
		r = brk_group_attach(g2, x->c, &err);
	check(r == 0 && brk_container_info(x->c)->groups == 2 &&
		  brk_container_info(x->c)->type == type,
	      "container_shared_by_second_group", "%d %s", r, err.msg);
	if (r == 0)
		r = brk_vfio_dev_open(g2, bdf2, &err, &d2);
	check(r == 0, "second_device_opened", "%d %s", r, err.msg);
	if (d2)
		printf("# second device %s in group %u\n", brk_vfio_dev_bdf(d2), grp);
	brk_vfio_dev_free(d2);
	brk_group_unref(g2);
	check(brk_container_info(x->c)->groups == 1, "second_group_released", "groups %u",
	      brk_container_info(x->c)->groups);
}

static int run(const char *bdf, const char *bdf2, bool bind, bool do_reset)
{
	struct ctx x = {0};
	struct brk_dma_cfg cfg = {0};
	struct vb_err err = {0};
	int r;

	if (open_all(&x, bdf, bind) < 0)
		return 2;
	print_device(x.d);
	check(brk_container_info(x.c)->type == BRK_IOMMU_TYPE1V2 ||
		  brk_container_info(x.c)->type == BRK_IOMMU_TYPE1,
	      "container_type1_selected", "type %d", brk_container_info(x.c)->type);
	check_handoff(&x);
	x.have_avail = brk_container_dma_avail(x.c, &x.avail0) == 0;
	x.pg = brk_container_info(x.c)->min_pgsize;
	check(brk_container_dma_cfg(x.c, &cfg) == 0, "container_dma_cfg", "no IOMMU");
	cfg.limits.max_mappings = 4;
	r = brk_dma_new(&cfg, &x.dma);
	check(r == 0, "dma_table_created", "%d", r);
	if (r < 0)
		return 1;
	x.pg = x.pg < 4096 ? 4096 : x.pg;
	x.memfd = make_memfd(64 * x.pg, F_SEAL_SHRINK);
	x.memfd_unsealed = make_memfd(64 * x.pg, 0);
	map_ok(&x, "dma_map_memfd", OWNER_A, 0x100000, 4 * x.pg, 0);
	map_ok(&x, "dma_map_second_owner", OWNER_B, 0x200000, 2 * x.pg, 4 * x.pg);
	check_kernel_count(&x, "dma_kernel_count_matches_after_map");
	if (bdf2)
		second_device(&x, bdf2);
	dma_rejects(&x);
	aperture_reject(&x);
	pinned_quota(&x);
	teardown_dma(&x);
	irq_rejects(&x);
	r = brk_irq_disable_all(brk_vfio_dev_irqs(x.d));
	check(r == 0, "irq_disable_all_noop", "%d", r);
	selftest_record(&x, bdf);
	if (do_reset) {
		r = brk_vfio_dev_reset(x.d, &err);
		check(r == 0 && brk_vfio_dev_resets(x.d) == 1, "device_reset", "%d %s", r, err.msg);
	}
	brk_dma_free(x.dma);
	close(x.memfd);
	close(x.memfd_unsealed);
	brk_vfio_dev_free(x.d);
	brk_group_unref(x.g);
	brk_container_unref(x.c);
	printf("1..%u\n# %u passed, %u failed\n", n_checks, n_checks - n_failed, n_failed);
	return n_failed ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: vfio-broker-selftest [--bind] [--no-reset] BDF [BDF2]\n"
			"  BDF        a PCI device bound to vfio-pci, e.g. 0000:01:00.0\n"
			"  BDF2       another one, in another IOMMU group: shares BDF's container\n"
			"  --bind     bind it to vfio-pci first (driver_override)\n"
			"  --no-reset skip VFIO_DEVICE_RESET (for devices without a reset method)\n"
			"exit: 0 all checks passed, 1 a check failed, 2 usage or setup error\n");
}

int main(int argc, char **argv)
{
	bool bind = false, reset = true;
	const char *bdf = NULL, *bdf2 = NULL;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bind") == 0)
			bind = true;
		else if (strcmp(argv[i], "--no-reset") == 0)
			reset = false;
		else if (!bdf && vb_bdf_parse(argv[i], VB_BDF_STRICT, NULL) == 0)
			bdf = argv[i];
		else if (!bdf2 && vb_bdf_parse(argv[i], VB_BDF_STRICT, NULL) == 0)
			bdf2 = argv[i];
		else {
			usage();
			return 2;
		}
	}
	if (!bdf) {
		usage();
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return run(bdf, bdf2, bind, reset);
}
