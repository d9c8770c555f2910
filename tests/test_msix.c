/*
 * Tests of the worker's MSI-X emulation (worker/msix.c, irq.c, region.c): table and PBA
 * accesses of every size and alignment, Message Control, interrupt routing with real eventfds
 * (the test plays the kernel and fires the eventfd a vector is routed to), and the mappable
 * areas around the table. Device: the hand-built PCIe image (16 vectors, table at BAR2+0,
 * PBA at BAR2+0x2000) and the captured nvme and e1000e images.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "wkr_test_util.h"

#define CAP   0x70
#define CTRL  (CAP + PCI_MSIX_FLAGS)
#define BAR   2
#define PBA   0x2000
#define NVEC  16
#define IMASK PCI_MSIX_ENTRY_CTRL_MASKBIT

struct fx {
	struct tdev t;
	int vmm[NVEC];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || tdev_open_fixture(&f->t, "pcie_spec_sriov_ari_rebar.img") < 0)
		return -1;
	for (int i = 0; i < NVEC; i++)
		f->vmm[i] = new_efd();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	tdev_close(&f->t);
	for (int i = 0; i < NVEC; i++)
		close(f->vmm[i]);
	free(f);
	return 0;
}

static uint64_t bar_rd(struct fx *f, uint64_t off, size_t len)
{
	uint8_t b[8] = {0};
	uint64_t v = 0;

	assert_int_equal(wkr_region_read(f->t.dev, BAR, off, b, len), 0);
	for (size_t i = 0; i < len; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static void bar_wr(struct fx *f, uint64_t off, size_t len, uint64_t v)
{
	uint8_t b[8];

	for (size_t i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	assert_int_equal(wkr_region_write(f->t.dev, BAR, off, b, len), 0);
}

/* Vector control word of entry v. */
static uint64_t vctl(uint32_t v)
{
	return 16ull * v + PCI_MSIX_ENTRY_VECTOR_CTRL;
}

static void enable(struct fx *f, bool fmask)
{
	assert_int_equal(
	    cfg_wr(&f->t, CTRL, 2, PCI_MSIX_FLAGS_ENABLE | (fmask ? PCI_MSIX_FLAGS_MASKALL : 0)),
	    0);
}

static void table_size_roundtrip(void **state, size_t size)
{
	struct fx *f = *state;
	const uint64_t pattern = 0x8877665544332211ull;
	uint64_t mask = size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
	uint8_t raw[16];

	/* Entry 3's address, every aligned slot of this size within the 16 bytes. */
	for (uint64_t o = 0; o < 12; o += size) {
		bar_wr(f, 48 + o, size, pattern >> (8 * (o % 8)));
		assert_int_equal(bar_rd(f, 48 + o, size), (pattern >> (8 * (o % 8))) & mask);
	}
	/* The device's BAR was not touched. */
	assert_int_equal(pread(f->t.fd, raw, 16, (off_t)(WKR_REGION_OFFSET(BAR) + 48)), 16);
	for (int i = 0; i < 16; i++)
		assert_int_equal(raw[i], 0);
}

static void test_msix_table_access_size1_roundtrip(void **state)
{
	table_size_roundtrip(state, 1);
}

static void test_msix_table_access_size2_roundtrip(void **state)
{
	table_size_roundtrip(state, 2);
}

static void test_msix_table_access_size4_roundtrip(void **state)
{
	table_size_roundtrip(state, 4);
}

static void test_msix_table_access_size8_roundtrip(void **state)
{
	table_size_roundtrip(state, 8);
}

static void test_msix_table_unaligned_access_spans_entries(void **state)
{
	struct fx *f = *state;

	/* Vectors come out of reset masked. */
	assert_int_equal(bar_rd(f, vctl(0), 4), IMASK);
	/* 8 bytes from entry 0's data word to entry 1's address: unmasks vector 0. */
	bar_wr(f, 8 + 3, 8, 0x1122334455000000ull);
	assert_int_equal(bar_rd(f, 8 + 3, 8), 0x1122334455000000ull);
	/* Bytes 11-18 are 00 00 00 55 44 33 22 11. */
	assert_int_equal(bar_rd(f, vctl(0), 4), 0x44550000);
	assert_int_equal(bar_rd(f, 16, 4), 0x00112233);
	/* Odd-sized, odd-offset reads see the same bytes. */
	assert_int_equal(bar_rd(f, 13, 3), 0x445500);
	assert_int_equal(bar_rd(f, 15, 2), 0x3344);
}

static void test_msix_pba_reads_pending_at_every_size(void **state)
{
	struct fx *f = *state;
	int wfd;
	uint64_t one = 1;

	enable(f, false);
	/* Vector 9 is masked and routed to the worker; fire it. */
	wfd = routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 9);
	assert_true(wfd >= 0);
	assert_int_equal(write(wfd, &one, 8), 8);
	assert_int_equal(wkr_irq_service(f->t.dev), 1);
	assert_int_equal(bar_rd(f, PBA, 8), 1ull << 9);
	assert_int_equal(bar_rd(f, PBA, 4), 1u << 9);
	assert_int_equal(bar_rd(f, PBA, 2), 1u << 9);
	assert_int_equal(bar_rd(f, PBA + 1, 1), 1u << 1);
	assert_int_equal(bar_rd(f, PBA, 1), 0);
	/* The PBA is read-only. */
	bar_wr(f, PBA, 8, 0);
	assert_int_equal(bar_rd(f, PBA, 8), 1ull << 9);
	assert_int_equal(wkr_irq_pending(f->t.dev), 1);
}

static void test_msix_enable_routes_masked_vectors_to_worker(void **state)
{
	struct fx *f = *state;
	const struct wkr_irq_set *s;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	assert_int_equal(f->t.rec.nsets, 0); /* nothing enabled yet */
	enable(f, false);
	assert_int_equal(f->t.rec.nsets, 1);
	s = &f->t.rec.sets[0].s;
	assert_int_equal(s->index, VFIO_PCI_MSIX_IRQ_INDEX);
	assert_int_equal(s->start, 0);
	assert_int_equal(s->count, NVEC);
	/* Every vector is masked, so none reaches the VMM. */
	for (uint32_t v = 0; v < NVEC; v++) {
		int fd = routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, v);

		assert_true(fd >= 0);
		assert_false(same_efd(fd, f->vmm[v]));
		efd_count(fd);
	}
	/* Message Control never reached the device. */
	assert_int_equal(phys_rd(&f->t, CTRL, 2), NVEC - 1);
	assert_int_equal(cfg_rd(&f->t, CTRL, 2), PCI_MSIX_FLAGS_ENABLE | (NVEC - 1));
}

static void test_msix_unmasked_vector_routed_to_vmm_irqfd(void **state)
{
	struct fx *f = *state;
	int before;
	const struct wkr_irq_set *s;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, false);
	before = f->t.rec.nsets;
	bar_wr(f, vctl(5), 4, 0);
	assert_int_equal(f->t.rec.nsets, before + 1);
	s = &f->t.rec.sets[before].s;
	assert_int_equal(s->start, 5);
	assert_int_equal(s->count, 1);
	/* The kernel now signals the VMM's irqfd directly. */
	assert_true(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 5), f->vmm[5]));
	assert_int_equal(wkr_irq_service(f->t.dev), 0);
}

static void test_msix_masked_vector_pending_then_delivered_on_unmask(void **state)
{
	struct fx *f = *state;
	int wfd;
	uint64_t one = 1;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, false);
	wfd = routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 2);
	assert_int_equal(write(wfd, &one, 8), 8);
	assert_int_equal(wkr_irq_service(f->t.dev), 1);
	assert_int_equal(bar_rd(f, PBA, 2), 1u << 2);
	assert_int_equal(efd_count(f->vmm[2]), 0);
	bar_wr(f, vctl(2), 1, 0); /* unmask with a byte write */
	assert_int_equal(efd_count(f->vmm[2]), 1);
	assert_int_equal(bar_rd(f, PBA, 2), 0);
	/* An interrupt that fired into the worker eventfd during the re-route is not lost. */
	bar_wr(f, vctl(3), 4, IMASK);
	assert_int_equal(write(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 3), &one, 8), 8);
	bar_wr(f, vctl(3), 4, 0);
	assert_int_equal(efd_count(f->vmm[3]), 1);
}

/* A VMM's eventfd as kernel vfio-pci accepts it, blocking, with its counter where a write of 1
 * would sleep until someone reads it. */
static int full_blocking_efd(void)
{
	uint64_t max = 0xfffffffffffffffeull;
	int fd = eventfd(0, EFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, &max, 8), 8);
	return fd;
}

static void test_msix_unmask_into_full_blocking_irqfd_returns_unsent(void **state)
{
	struct fx *f = *state;
	uint64_t one = 1;
	int wfd;

	close(f->vmm[2]);
	f->vmm[2] = full_blocking_efd();
	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, false);
	wfd = routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 2);
	assert_int_equal(write(wfd, &one, 8), 8);
	assert_int_equal(wkr_irq_service(f->t.dev), 1);
	assert_int_equal(wkr_irq_unsent(f->t.dev), 0);
	/* The unmask delivers the pending interrupt: a plain write would sleep here (the test's
	 * hang limit ends it), the worker counts it instead. */
	bar_wr(f, vctl(2), 1, 0);
	assert_int_equal(wkr_irq_unsent(f->t.dev), 1);
	assert_int_equal(bar_rd(f, PBA, 2), 0);
	assert_true(efd_count(f->vmm[2]) == 0xfffffffffffffffeull);
	/* Once the VMM read its counter, the same blocking eventfd is signalled again. */
	bar_wr(f, vctl(2), 4, IMASK);
	assert_int_equal(write(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 2), &one, 8), 8);
	assert_int_equal(wkr_irq_service(f->t.dev), 1);
	bar_wr(f, vctl(2), 4, 0);
	assert_int_equal(efd_count(f->vmm[2]), 1);
	assert_int_equal(wkr_irq_unsent(f->t.dev), 1);
}

static void test_msix_vfio_mode_loopback_into_full_blocking_eventfd_returns_unsent(void **state)
{
	struct fx *f = *state;
	const uint32_t trig = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	const uint8_t yes[2] = {1, 1};
	int efd[2] = {full_blocking_efd(), f->vmm[1]};

	wkr_irq_set_mode(f->t.dev, WKR_IRQ_VFIO);
	assert_int_equal(wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, trig, 0, 2, efd, NULL),
			 0);
	/* DATA_NONE and DATA_BOOL triggers: the full one is counted, the other signalled, and
	 * neither waits. */
	assert_int_equal(wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
					  2, NULL, NULL),
			 0);
	assert_int_equal(wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX,
					  VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
					  2, NULL, yes),
			 0);
	assert_int_equal(wkr_irq_unsent(f->t.dev), 2);
	assert_int_equal(efd_count(f->vmm[1]), 2);
	assert_true(efd_count(efd[0]) == 0xfffffffffffffffeull);
	close(efd[0]);
}

static void test_msix_function_mask_holds_then_releases(void **state)
{
	struct fx *f = *state;
	int wfd;
	uint64_t one = 1;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, true);
	bar_wr(f, vctl(0), 4, 0);
	bar_wr(f, vctl(7), 4, 0);
	/* Function mask set: vector 7 unmasked in its entry still goes to the worker. */
	wfd = routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 7);
	assert_false(same_efd(wfd, f->vmm[7]));
	assert_int_equal(write(wfd, &one, 8), 8);
	assert_int_equal(wkr_irq_service(f->t.dev), 1);
	assert_int_equal(bar_rd(f, PBA, 1), 1u << 7);
	/* Clearing the function mask delivers it and routes 0 and 7 to the VMM. */
	enable(f, false);
	assert_int_equal(efd_count(f->vmm[7]), 1);
	assert_true(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), f->vmm[0]));
	assert_true(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 7), f->vmm[7]));
	assert_false(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 1), f->vmm[1]));
}

static void test_msix_disable_tears_down_and_reenable_restores(void **state)
{
	struct fx *f = *state;
	int n;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, false);
	bar_wr(f, vctl(4), 4, 0);
	n = f->t.rec.nsets;
	assert_int_equal(cfg_wr(&f->t, CTRL, 2, 0), 0);
	assert_int_equal(f->t.rec.nsets, n + 1);
	assert_true(f->t.rec.sets[n].s.disable);
	assert_int_equal(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 4), -1);
	/* The table survives the disable; enabling again routes 4 straight to the VMM. */
	assert_int_equal(bar_rd(f, vctl(4), 4), 0);
	enable(f, false);
	assert_true(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 4), f->vmm[4]));
	/* A broker failure is reported to the caller. */
	f->t.rec.fail_next = -EIO;
	assert_int_equal(cfg_wr(&f->t, CTRL, 2, 0), -EIO);
}

static void test_msix_release_then_new_fds_reroute(void **state)
{
	struct fx *f = *state;
	int n;
	int nv;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, NVEC, f->vmm, -1),
			 0);
	enable(f, false);
	bar_wr(f, vctl(1), 4, 0);
	/* The VMM goes away: the index is torn down, guest state kept. */
	n = f->t.rec.nsets;
	assert_int_equal(wkr_irq_release(f->t.dev), 0);
	assert_true(f->t.rec.sets[n].s.disable);
	assert_int_equal(cfg_rd(&f->t, CTRL, 2) & PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_ENABLE);
	/* A new VMM hands new fds: the index is enabled again, vector 1 to the new fd. */
	nv = new_efd();
	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, &nv, -1), 0);
	assert_true(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 1), nv));
	assert_false(same_efd(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), f->vmm[0]));
	close(nv);
}

static void test_msix_bad_fd_requests_rejected(void **state)
{
	struct fx *f = *state;
	int bad = -1;

	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 15, 2, f->vmm, -1),
			 -EINVAL);
	assert_int_equal(wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &bad, -1),
			 -EBADF);
	assert_int_equal(wkr_irq_set_fds(f->t.dev, 7, 0, 1, f->vmm, -1), -EINVAL);
	assert_int_equal(
	    wkr_irq_set_fds(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, f->vmm, f->vmm[1]), -EINVAL);
	assert_int_equal(f->t.rec.nsets, 0);
}

static void test_msix_region_access_bounds_checked(void **state)
{
	struct fx *f = *state;
	uint8_t b[8] = {0};

	assert_int_equal(wkr_region_read(f->t.dev, BAR, 0x4000 - 4, b, 8), -EINVAL);
	assert_int_equal(wkr_region_read(f->t.dev, BAR, UINT64_MAX - 2, b, 4), -EINVAL);
	assert_int_equal(wkr_region_read(f->t.dev, 4, 0, b, 4), -ENOENT);
	assert_int_equal(wkr_region_read(f->t.dev, 9, 0, b, 4), -EINVAL);
	assert_int_equal(wkr_region_write(f->t.dev, VFIO_PCI_ROM_REGION_INDEX, 0, b, 2), -EACCES);
	assert_int_equal(wkr_region_read(f->t.dev, BAR, 0, b, 0), -EINVAL);
	/* A read straddling the end of the table and plain BAR space works piecewise. */
	assert_int_equal(pwrite(f->t.fd, "\x5a", 1, (off_t)(WKR_REGION_OFFSET(BAR) + NVEC * 16)),
			 1);
	assert_int_equal(wkr_region_read(f->t.dev, BAR, NVEC * 16 - 4, b, 8), 0);
	assert_int_equal(b[0], IMASK);
	assert_int_equal(b[4], 0x5a);
	/* The ROM is readable through the region, with its signature. */
	assert_int_equal(wkr_region_read(f->t.dev, VFIO_PCI_ROM_REGION_INDEX, 0, b, 2), 0);
	assert_int_equal(b[0], 0x55);
	assert_int_equal(b[1], 0xaa);
}

static void test_msix_mmap_areas_exclude_table_and_pba_pages(void **state)
{
	struct fx *f = *state;
	struct wkr_mmap_area a[8];
	size_t n;
	struct tdev nv;

	/* BAR2: 16 KiB, table page 0, PBA page 2: areas 0x1000-0x2000 and 0x3000-0x4000. */
	assert_int_equal(wkr_region_mmap_areas(f->t.dev, BAR, a, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(a[0].offset, 0x1000);
	assert_int_equal(a[0].size, 0x1000);
	assert_int_equal(a[1].offset, 0x3000);
	assert_int_equal(a[1].size, 0x1000);
	/* BAR0 has no MSI-X structure: all of it. I/O BAR3: none. */
	assert_int_equal(wkr_region_mmap_areas(f->t.dev, 0, a, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(a[0].size, 0x100000);
	assert_int_equal(wkr_region_mmap_areas(f->t.dev, 3, a, 8, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(wkr_region_mmap_areas(f->t.dev, BAR, a, 1, &n), -ENOSPC);

	/* nvme: table at 0x2000 and PBA at 0x3000 of a 16 KiB BAR0, MSI-X mappable: the
	 * emulation still needs both pages trapped. */
	assert_int_equal(tdev_open_fixture(&nv, "nvme.img"), 0);
	assert_int_equal(wkr_region_mmap_areas(nv.dev, 0, a, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(a[0].offset, 0);
	assert_int_equal(a[0].size, 0x2000);
	tdev_close(&nv);
}

static void test_msix_e1000e_capture_five_vectors(void **state)
{
	struct tdev t;
	uint8_t b[4];

	assert_int_equal(tdev_open_fixture(&t, "e1000e.img"), 0);
	assert_int_equal(cfg_wr(&t, 0xa0 + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	assert_int_equal(t.rec.nsets, 1);
	assert_int_equal(t.rec.sets[0].s.count, 5);
	/* Table in BAR3 at 0; entry 4's control word is the last of the table. */
	assert_int_equal(wkr_region_read(t.dev, 3, 4 * 16 + 12, b, 4), 0);
	assert_int_equal(b[0], IMASK);
	tdev_close(&t);
	(void)state;
}

static void test_msix_vfio_mode_set_irqs_routes_and_drops_unassigned(void **state)
{
	struct fx *f = *state;
	const uint32_t trig = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	uint64_t one = 1;
	int n;

	wkr_irq_set_mode(f->t.dev, WKR_IRQ_VFIO);
	/* SET_IRQS enables the index by itself, with every vector (clients send them in
	 * chunks), although the guest view has MSI-X off and every entry masked. */
	assert_int_equal(
	    wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, trig, 0, 1, &f->vmm[0], NULL), 0);
	n = f->t.rec.nsets;
	assert_true(n >= 1);
	assert_true(f->t.rec.sets[n - 1].s.enable);
	assert_int_equal(f->t.rec.sets[n - 1].s.count, NVEC);
	assert_int_equal(write(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), &one, 8), 8);
	assert_int_equal(efd_count(f->vmm[0]), 1);
	/* The guest view's enable and masks are recorded, not routed: the VMM emulates them. */
	enable(f, true);
	bar_wr(f, vctl(0), 4, IMASK);
	assert_int_equal(f->t.rec.nsets, n);
	/* Vector 1 has no trigger: what fires there is dropped, not replayed once it has one. */
	assert_int_equal(write(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 1), &one, 8), 8);
	(void)wkr_irq_service(f->t.dev);
	assert_int_equal(
	    wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX, trig, 1, 1, &f->vmm[1], NULL), 0);
	assert_int_equal(efd_count(f->vmm[1]), 0);
	assert_int_equal(write(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 1), &one, 8), 8);
	assert_int_equal(efd_count(f->vmm[1]), 1);
	/* DATA_NONE with count 0 turns the index off. */
	assert_int_equal(wkr_irq_set_vfio(f->t.dev, VFIO_PCI_MSIX_IRQ_INDEX,
					  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0,
					  0, NULL, NULL),
			 0);
	assert_true(f->t.rec.sets[f->t.rec.nsets - 1].s.disable);
	assert_int_equal(routed_fd(&f->t.rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), -1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_msix_vfio_mode_set_irqs_routes_and_drops_unassigned, setup, teardown),
	    T(test_msix_table_access_size1_roundtrip),
	    T(test_msix_table_access_size2_roundtrip),
	    T(test_msix_table_access_size4_roundtrip),
	    T(test_msix_table_access_size8_roundtrip),
	    T(test_msix_table_unaligned_access_spans_entries),
	    T(test_msix_pba_reads_pending_at_every_size),
	    T(test_msix_enable_routes_masked_vectors_to_worker),
	    T(test_msix_unmasked_vector_routed_to_vmm_irqfd),
	    T(test_msix_masked_vector_pending_then_delivered_on_unmask),
	    T(test_msix_unmask_into_full_blocking_irqfd_returns_unsent),
	    T(test_msix_vfio_mode_loopback_into_full_blocking_eventfd_returns_unsent),
	    T(test_msix_function_mask_holds_then_releases),
	    T(test_msix_disable_tears_down_and_reenable_restores),
	    T(test_msix_release_then_new_fds_reroute),
	    T(test_msix_bad_fd_requests_rejected),
	    T(test_msix_region_access_bounds_checked),
	    T(test_msix_mmap_areas_exclude_table_and_pba_pages),
	    cmocka_unit_test(test_msix_e1000e_capture_five_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
