/*
 * Tests of the worker's config-space virtualization (worker/cfg.c, caps.c, bar.c, msi.c) on the
 * hand-built PCIe specification image, on images captured from real devices and on small
 * images written in the tests. The memfd behind each device plays the device fd, so a test can
 * see exactly what reached "hardware".
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "wkr_test_util.h"

#define SPEC "pcie_spec_sriov_ari_rebar.img"

/* A minimal device: 256-byte config, BAR0 4 KiB, the rest given per test after it. */
#define MINI_HEAD                       \
	"vfio-device-image 1\n"         \
	"device flags=0x3\n"            \
	"region 7 size=256 flags=0x3\n" \
	"config 0 34 12 78 56 00 00 10 00 00 00 00 ff 00 00 00 00\n"

static int setup_spec(void **state)
{
	struct tdev *t = calloc(1, sizeof(*t));

	if (!t || tdev_open_fixture(t, SPEC) < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tdev *t = *state;

	tdev_close(t);
	free(t);
	return 0;
}

static void test_cfg_bar32_sizing_probe_returns_size_mask(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_2, 4, 0xffffffff), 0);
	/* 16 KiB, 32-bit, not prefetchable. */
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_2, 4), 0xffffc000);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_2, 4, 0xfebc1234), 0);
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_2, 4), 0xfebc0000);
}

static void test_cfg_bar64_sizing_probe_returns_both_halves(void **state)
{
	struct tdev *t = *state;
	uint64_t addr;
	bool en = true;

	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_0, 4), 0x0000000c);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_0, 4, 0xffffffff), 0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_1, 4, 0xffffffff), 0);
	/* 1 MiB, 64-bit, prefetchable: type bits kept from the real BAR. */
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_0, 4), 0xfff0000c);
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_1, 4), 0xffffffff);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_0, 4, 0xe0000000), 0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_1, 4, 0x00000004), 0);
	assert_int_equal(wkr_bar_state(t->dev, 0, &addr, &en), 0);
	assert_int_equal(addr, 0x4e0000000ull);
	assert_false(en);
	/* The upper half is not a BAR of its own. */
	assert_int_equal(wkr_bar_state(t->dev, 1, &addr, &en), -ENOENT);
}

static void test_cfg_io_bar_sizing_probe_keeps_io_bit(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_3, 4, 0xffffffff), 0);
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_3, 4), 0xffffffe1);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_3, 2, 0xc043), 0);
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_3, 2), 0xc041);
}

static void test_cfg_rom_sizing_probe_keeps_enable_bit(void **state)
{
	struct tdev *t = *state;
	uint64_t addr;
	bool en = true;

	assert_int_equal(cfg_wr(t, PCI_ROM_ADDRESS, 4, 0xfffff800), 0);
	assert_int_equal(cfg_rd(t, PCI_ROM_ADDRESS, 4), 0xffff0000); /* 64 KiB */
	assert_int_equal(cfg_wr(t, PCI_ROM_ADDRESS, 4, 0xfeb00001), 0);
	assert_int_equal(cfg_rd(t, PCI_ROM_ADDRESS, 4), 0xfeb00001);
	assert_int_equal(wkr_bar_state(t->dev, VFIO_PCI_ROM_REGION_INDEX, &addr, &en), 0);
	assert_int_equal(addr, 0xfeb00000);
	assert_false(en); /* memory decoding is still off */
}

static void test_cfg_unimplemented_bar_reads_zero(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_4, 4, 0xffffffff), 0);
	assert_int_equal(cfg_rd(t, PCI_BASE_ADDRESS_4, 4), 0);
	assert_int_equal(wkr_bar_state(t->dev, 4, NULL, NULL), -ENOENT);
}

static void test_cfg_command_memory_enable_notifies_bars_changed(void **state)
{
	struct tdev *t = *state;
	uint64_t addr;
	bool en;

	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_2, 4, 0xfebc0000), 0);
	assert_int_equal(t->rec.bars_changed, 0); /* decoding off: no news */
	assert_int_equal(cfg_wr(t, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 0);
	assert_int_equal(t->rec.bars_changed, 1);
	assert_int_equal(t->rec.last_command & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	/* The Command register reaches the device. */
	assert_int_equal(phys_rd(t, PCI_COMMAND, 2), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_int_equal(wkr_bar_state(t->dev, 2, &addr, &en), 0);
	assert_int_equal(addr, 0xfebc0000);
	assert_true(en);
	/* Bus master alone is no BAR change. */
	assert_int_equal(cfg_wr(t, PCI_COMMAND, 2, PCI_COMMAND_MEMORY), 0);
	assert_int_equal(t->rec.bars_changed, 1);
	/* Moving a decoding BAR is. */
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_2, 4, 0xfeb80000), 0);
	assert_int_equal(t->rec.bars_changed, 2);
	assert_int_equal(cfg_wr(t, PCI_COMMAND, 2, 0), 0);
	assert_int_equal(t->rec.bars_changed, 3);
	assert_int_equal(wkr_cfg_command(t->dev), 0);
}

/* A device whose writes are recorded: the memfd cannot model write-1-to-clear bits, so the test
 * checks what the library wrote instead. */
struct wlog {
	int fd;
	uint64_t off[16];
	uint8_t data[16][4];
	int n;
};

static ssize_t wlog_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct wlog *w = ctx;

	return pread(w->fd, buf, len, (off_t)off);
}

static ssize_t wlog_pwrite(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct wlog *w = ctx;

	if (w->n < 16 && len <= 4) {
		w->off[w->n] = off;
		memcpy(w->data[w->n++], buf, len);
	}
	return (ssize_t)len; /* hardware would apply RW1C; the memfd is left as it was */
}

/* A device whose config space cannot be read back after a reset. */
struct flaky {
	struct wlog w;
	bool fail;
};

static ssize_t flaky_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct flaky *f = ctx;

	return f->fail ? -EIO : wlog_pread(&f->w, buf, len, off);
}

static ssize_t flaky_pwrite(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct flaky *f = ctx;

	return wlog_pwrite(&f->w, buf, len, off);
}

/* The reset is refused half-way (config space unreadable): the old MSI capability's handler and
 * permissions must not outlive it. A guest write to where MSI control was reaches neither the
 * kernel (no SET_IRQS) nor the device. */
static void test_cfg_failed_reset_leaves_nothing_routed(void **state)
{
	struct tdev *t = *state;
	struct flaky f = {.w = {.fd = t->fd}};
	struct wkr_io io = {flaky_pread, flaky_pwrite, &f};
	struct wkr_callbacks cb = {rec_set_irqs, rec_bars_changed, &t->rec};
	struct wkr_dev *d;
	uint16_t on = PCI_MSI_FLAGS_ENABLE, id_before, id_after;

	assert_int_equal(wkr_dev_new(wkr_image_info(t->img), &io, &cb, &d), 0);
	assert_int_equal(wkr_cfg_read(d, PCI_DEVICE_ID, &id_before, 2), 0);
	f.fail = true;
	assert_int_equal(wkr_dev_reset(d), -EIO);
	f.fail = false;
	assert_int_equal(wkr_cfg_write(d, 0x50 + PCI_MSI_FLAGS, &on, 2), 0);
	assert_int_equal(t->rec.nsets, 0);
	assert_int_equal(f.w.n, 0);
	/* The stale MSI handler would read "MSI control" at offset 0 + 2 and clamp it. */
	assert_int_equal(wkr_cfg_read(d, PCI_DEVICE_ID, &id_after, 2), 0);
	assert_int_equal(id_after, id_before);
	wkr_dev_free(d);
}

static void test_cfg_status_rw1c_bits_not_written_back(void **state)
{
	struct tdev *t = *state;
	struct wlog w = {.fd = t->fd};
	struct wkr_io io = {wlog_pread, wlog_pwrite, &w};
	struct wkr_callbacks cb = {rec_set_irqs, rec_bars_changed, &t->rec};
	struct wkr_dev *d;
	uint8_t b[4] = {PCI_COMMAND_IO, 0, 0, 0};
	uint8_t s[2];

	assert_int_equal(wkr_dev_new(wkr_image_info(t->img), &io, &cb, &d), 0);
	assert_int_equal(phys_wr(t, PCI_STATUS, 2, PCI_STATUS_DETECTED_PARITY | 0x10), 0);
	/* A 4-byte write over Command and Status with zero status must not write the set bit
	 * back (that would clear it). */
	assert_int_equal(wkr_cfg_write(d, PCI_COMMAND, b, 4), 0);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.off[0], WKR_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND);
	assert_int_equal(w.data[0][0], PCI_COMMAND_IO);
	assert_int_equal(w.data[0][3] & 0x80, 0);
	/* Writing 1 passes the 1 on. */
	b[3] = 0x80;
	assert_int_equal(wkr_cfg_write(d, PCI_COMMAND, b, 4), 0);
	assert_int_equal(w.n, 2);
	assert_int_equal(w.data[1][3] & 0x80, 0x80);
	/* The capability-list bit is the shadow's. */
	assert_int_equal(wkr_cfg_read(d, PCI_STATUS, s, 2), 0);
	assert_int_equal(s[0] & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
	wkr_dev_free(d);
}

static void test_cfg_header_type_multifunction_bit_masked(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(phys_rd(t, PCI_HEADER_TYPE, 1), 0x80);
	assert_int_equal(cfg_rd(t, PCI_HEADER_TYPE, 1), 0x00);
	assert_int_equal(cfg_wr(t, PCI_HEADER_TYPE, 1, 0x80), 0);
	assert_int_equal(cfg_rd(t, PCI_HEADER_TYPE, 1), 0x00);
}

static void test_cfg_identity_read_only(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(cfg_rd(t, PCI_VENDOR_ID, 4), 0x56781234);
	assert_int_equal(cfg_wr(t, PCI_VENDOR_ID, 4, 0), 0);
	assert_int_equal(cfg_rd(t, PCI_VENDOR_ID, 4), 0x56781234);
	assert_int_equal(cfg_rd(t, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x00011234);
}

/* Walks the standard list as a guest would, collecting ids. */
static int walk_std(struct tdev *t, uint8_t *ids, int max)
{
	int n = 0;
	uint8_t pos = (uint8_t)cfg_rd(t, PCI_CAPABILITY_LIST, 1);

	while (pos && n < max) {
		ids[n++] = (uint8_t)cfg_rd(t, pos, 1);
		pos = (uint8_t)cfg_rd(t, pos + 1, 1);
	}
	return n;
}

static void test_cfg_ext_caps_sriov_ari_rebar_hidden(void **state)
{
	struct tdev *t = *state;
	uint16_t seen[16];
	int n = 0;
	uint32_t pos = 0x100;

	while (pos && n < 16) {
		uint32_t h = cfg_rd(t, pos, 4);

		seen[n++] = (uint16_t)h;
		pos = h >> 20;
	}
	/* SR-IOV sat at 0x100: its header is left as id 0 pointing on. */
	assert_int_equal(n, 3);
	assert_int_equal(seen[0], 0);
	assert_int_equal(seen[1], PCI_EXT_CAP_ID_ERR);
	assert_int_equal(seen[2], PCI_EXT_CAP_ID_DSN);
	assert_int_equal(cfg_rd(t, 0x100, 4), 0x150u << 20);
	/* TotalVFs, the ARI capability and the Resizable BAR control read as zero. */
	assert_int_equal(cfg_rd(t, 0x10c, 4), 0);
	assert_int_equal(cfg_rd(t, 0x144, 4), 0);
	assert_int_equal(cfg_rd(t, 0x198, 4), 0);
	assert_int_equal(cfg_rd(t, 0x1a4, 4), 0x67452301);
	/* Writes to a hidden capability go nowhere. */
	assert_int_equal(cfg_wr(t, 0x108, 2, 1), 0); /* VF Enable */
	assert_int_equal(phys_rd(t, 0x108, 2), 0);
}

static void test_cfg_read_crossing_capabilities_matches_bytewise(void **state)
{
	struct tdev *t = *state;

	/* 0x6e-0x71: unassigned bytes, then the MSI-X id and next pointer. */
	for (uint32_t off = 0x3c; off < 0x78; off++) {
		uint8_t whole[4], byte[4];

		assert_int_equal(wkr_cfg_read(t->dev, off, whole, 4), 0);
		for (int i = 0; i < 4; i++)
			assert_int_equal(wkr_cfg_read(t->dev, off + (uint32_t)i, &byte[i], 1), 0);
		assert_memory_equal(whole, byte, 4);
	}
}

static void test_cfg_write_crossing_capabilities_obeys_each(void **state)
{
	struct tdev *t = *state;
	/* 8 bytes from 0x6c: unassigned space (raw, as the kernel leaves it), then the MSI-X
	 * header (read only) and Message Control (enable bit virtual). */
	uint8_t buf[8] = {0xaa, 0xbb, 0xcc, 0xdd, 0x00, 0x00, 0x00, 0x80};

	assert_int_equal(phys_wr(t, 0x6c, 4, 0x11223344), 0);
	assert_int_equal(wkr_cfg_write(t->dev, 0x6c, buf, sizeof(buf)), 0);
	assert_int_equal(phys_rd(t, 0x6c, 4), 0xddccbbaa);
	assert_int_equal(cfg_rd(t, 0x6c, 4), 0xddccbbaa);
	assert_int_equal(cfg_rd(t, 0x70, 2), 0x8011);
	assert_int_equal(cfg_rd(t, 0x72, 2), 0x800f);
	assert_int_equal(phys_rd(t, 0x72, 2), 0x000f);
}

static void test_cfg_access_past_end_rejected_untouched(void **state)
{
	struct tdev *t = *state;
	uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct tdev small;

	assert_int_equal(wkr_cfg_read(t->dev, 4094, b, 4), -EINVAL);
	assert_int_equal(wkr_cfg_read(t->dev, 4096, b, 1), -EINVAL);
	assert_int_equal(wkr_cfg_read(t->dev, 0, b, 0), -EINVAL);
	assert_int_equal(wkr_cfg_read(t->dev, 0xffffffffu, b, 2), -EINVAL);
	assert_int_equal(wkr_cfg_write(t->dev, 4093, b, 4), -EINVAL);
	assert_int_equal(phys_rd(t, 4092, 4), 0);

	assert_int_equal(tdev_open_fixture(&small, "edu.img"), 0);
	assert_int_equal(wkr_cfg_read(small.dev, 0x100, b, 4), -EINVAL);
	assert_int_equal(wkr_cfg_write(small.dev, 0xfd, b, 4), -EINVAL);
	assert_int_equal(cfg_rd(&small, 0xfc, 4), phys_rd(&small, 0xfc, 4));
	tdev_close(&small);
}

static void test_cfg_msi_enable_requests_set_irqs(void **state)
{
	struct tdev *t = *state;
	const uint32_t ctl = 0x50 + PCI_MSI_FLAGS;

	assert_int_equal(cfg_wr(t, 0x50 + PCI_MSI_ADDRESS_LO, 4, 0xfee00000), 0);
	assert_int_equal(cfg_wr(t, 0x50 + PCI_MSI_DATA_64, 2, 0x4041), 0);
	assert_int_equal(cfg_wr(t, ctl, 2, PCI_MSI_FLAGS_ENABLE), 0);
	assert_int_equal(t->rec.nsets, 1);
	assert_int_equal(t->rec.sets[0].s.index, VFIO_PCI_MSI_IRQ_INDEX);
	assert_int_equal(t->rec.sets[0].s.count, 1);
	assert_false(t->rec.sets[0].s.disable);
	/* Address and data stay virtual: the device's copy is untouched. */
	assert_int_equal(cfg_rd(t, 0x50 + PCI_MSI_ADDRESS_LO, 4), 0xfee00000);
	assert_int_equal(phys_rd(t, 0x50 + PCI_MSI_ADDRESS_LO, 4), 0);
	assert_int_equal(phys_rd(t, ctl, 2), 0x0186);
	/* Four vectors: the index is torn down and enabled again with 4. */
	assert_int_equal(cfg_wr(t, ctl, 2, PCI_MSI_FLAGS_ENABLE | (2 << 4)), 0);
	assert_int_equal(t->rec.nsets, 3);
	assert_true(t->rec.sets[1].s.disable);
	assert_int_equal(t->rec.sets[2].s.count, 4);
	/* Disable. */
	assert_int_equal(cfg_wr(t, ctl, 2, 2 << 4), 0);
	assert_int_equal(t->rec.nsets, 4);
	assert_true(t->rec.sets[3].s.disable);
	assert_int_equal(cfg_wr(t, ctl, 2, 2 << 4), 0);
	assert_int_equal(t->rec.nsets, 4); /* no change, no request */
}

static void test_cfg_msi_vector_count_clamped_to_capable(void **state)
{
	struct tdev *t = *state;
	const uint32_t ctl = 0x50 + PCI_MSI_FLAGS;

	assert_int_equal(cfg_wr(t, ctl, 2, PCI_MSI_FLAGS_ENABLE | (5 << 4)), 0);
	assert_int_equal((cfg_rd(t, ctl, 2) & PCI_MSI_FLAGS_QSIZE) >> 4, 3);
	assert_int_equal(t->rec.nsets, 1);
	assert_int_equal(t->rec.sets[0].s.count, 8);
	/* Read-only capability bits survive any write. */
	assert_int_equal(cfg_rd(t, ctl, 2) & 0x018e, 0x0186);
}

static void test_cfg_msi_masked_vector_pending_then_delivered(void **state)
{
	struct tdev *t = *state;
	const uint32_t ctl = 0x50 + PCI_MSI_FLAGS, mask = 0x60, pend = 0x64;
	int vmm = new_efd();
	int wfd;
	uint64_t one = 1;

	assert_true(vmm >= 0);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &vmm, -1), 0);
	assert_int_equal(cfg_wr(t, mask, 4, 1), 0);
	assert_int_equal(cfg_wr(t, ctl, 2, PCI_MSI_FLAGS_ENABLE), 0);
	wfd = routed_fd(&t->rec, VFIO_PCI_MSI_IRQ_INDEX, 0);
	assert_true(wfd >= 0);
	assert_int_not_equal(wfd, vmm);
	assert_int_equal(write(wfd, &one, 8), 8); /* the device fires */
	assert_int_equal(wkr_irq_service(t->dev), 1);
	assert_int_equal(cfg_rd(t, pend, 4), 1);
	assert_int_equal(efd_count(vmm), 0);
	assert_int_equal(cfg_wr(t, mask, 4, 0), 0); /* unmask */
	assert_int_equal(efd_count(vmm), 1);	    /* the pending interrupt */
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_MSI_IRQ_INDEX, 0), vmm));
	assert_int_equal(cfg_rd(t, pend, 4), 0);
	assert_int_equal(wkr_irq_pending(t->dev), 0);
	close(vmm);
}

static void test_cfg_pcie_flr_bit_stays_virtual(void **state)
{
	struct tdev *t = *state;
	const uint32_t devctl = 0x80 + PCI_EXP_DEVCTL;

	assert_int_equal(cfg_wr(t, devctl, 2, PCI_EXP_DEVCTL_BCR_FLR | 0x2817), 0);
	assert_int_equal(phys_rd(t, devctl, 2), 0x2817);
	assert_int_equal(cfg_rd(t, devctl, 2), 0x2817);
}

static void cfg_view(struct tdev *t, uint8_t *view)
{
	for (uint32_t off = 0; off < 4096; off += 1024)
		assert_int_equal(wkr_cfg_read(t->dev, off, view + off, 1024), 0);
}

/* The whole config view across a reset: what the kernel restores on the device (BARs, Command)
 * the guest keeps, MSI and MSI-X are back at power-on, nothing else moves. The memfd keeps the
 * Command register as the kernel's reset restores it. */
static void test_cfg_reset_keeps_bars_and_command_clears_msi(void **state)
{
	struct tdev *t = *state;
	static uint8_t view0[4096], view1[4096], view2[4096];
	const uint32_t msi = 0x50, msi_end = 0x68, msix = 0x70, msix_end = 0x7c;
	int vmm = new_efd();
	uint8_t entry[16] = {0x00, 0x00, 0xe0, 0xfe, 0, 0, 0, 0, 0x41, 0x40, 0, 0, 0, 0, 0, 0};
	int n;
	uint8_t table[16];
	const uint8_t masked[16] = {[PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT};
	uint64_t addr;
	bool en;
	uint8_t zero[4] = {0};

	cfg_view(t, view0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_0, 4, 0xfe000000), 0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_1, 4, 0x00000001), 0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_2, 4, 0xfebc0000), 0);
	assert_int_equal(cfg_wr(t, PCI_BASE_ADDRESS_3, 4, 0x0000c000), 0);
	assert_int_equal(cfg_wr(t, PCI_ROM_ADDRESS, 4, 0xfeb00000 | PCI_ROM_ADDRESS_ENABLE), 0);
	assert_int_equal(cfg_wr(t, PCI_CACHE_LINE_SIZE, 1, 0x10), 0);
	assert_int_equal(cfg_wr(t, PCI_INTERRUPT_LINE, 1, 0x0b), 0);
	assert_int_equal(
	    cfg_wr(t, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 0);
	cfg_view(t, view1);
	/* The guest programs MSI's address and data, and enables MSI-X with vector 0 unmasked. */
	assert_int_equal(cfg_wr(t, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee00000), 0);
	assert_int_equal(cfg_wr(t, msi + PCI_MSI_DATA_64, 2, 0x4041), 0);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &vmm, -1), 0);
	assert_int_equal(cfg_wr(t, msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	assert_int_equal(wkr_region_write(t->dev, 2, 0, entry, 16), 0);
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), vmm));
	n = t->rec.nsets;

	assert_int_equal(wkr_dev_reset(t->dev), 0);
	assert_true(t->rec.nsets > n && t->rec.sets[n].s.disable);
	assert_int_equal(t->rec.sets[n].s.index, VFIO_PCI_MSIX_IRQ_INDEX);
	cfg_view(t, view2);
	for (uint32_t off = 0; off < 4096; off++) {
		bool in_msi = (off >= msi && off < msi_end) || (off >= msix && off < msix_end);

		if (view2[off] != (in_msi ? view0[off] : view1[off]))
			fail_msg("config byte %#x after reset: %#x, want %#x", off, view2[off],
				 in_msi ? view0[off] : view1[off]);
	}
	/* MSI-X table back to power-on: zero, every vector masked; nothing pending. */
	assert_int_equal(wkr_region_read(t->dev, 2, 0, table, 16), 0);
	assert_memory_equal(table, masked, 16);
	assert_int_equal(wkr_irq_pending(t->dev), 0);
	/* The BARs decode where they did: a VMM's mappings stay valid. */
	assert_int_equal(wkr_bar_state(t->dev, 0, &addr, &en), 0);
	assert_true(addr == 0x1fe000000ull && en);
	assert_int_equal(wkr_bar_state(t->dev, 2, &addr, &en), 0);
	assert_true(addr == 0xfebc0000 && en);
	assert_int_equal(wkr_cfg_command(t->dev),
			 PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	/* The VMM's fd survives: enabling again routes to it once the vector is unmasked. */
	assert_int_equal(cfg_wr(t, msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	assert_int_equal(wkr_region_write(t->dev, 2, 12, zero, 4), 0);
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_MSIX_IRQ_INDEX, 0), vmm));
	close(vmm);
}

/* INTx has no guest enable that would route it again: the VMM's fds are routed again at once. */
static void test_cfg_reset_routes_intx_again(void **state)
{
	struct tdev *t = *state;
	int trig = new_efd(), res = new_efd();
	int n;

	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, res), 0);
	n = t->rec.nsets;
	assert_int_equal(wkr_dev_reset(t->dev), 0);
	assert_int_equal(t->rec.nsets, n + 3); /* disable, trigger, unmask */
	assert_true(t->rec.sets[n].s.disable);
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_INTX_IRQ_INDEX, 0), trig));
	assert_int_equal(t->rec.sets[n + 2].s.action, VFIO_IRQ_SET_ACTION_UNMASK);
	assert_true(same_efd(t->rec.sets[n + 2].fds[0], res));
	close(trig);
	close(res);
}

static void test_cfg_bad_region_table_rejected(void **state)
{
	struct tdev t;

	/* A 64-bit BAR in the last slot. */
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "region 5 size=4096 flags=3\n"
						      "config 0x24 04 00 00 00\n"),
			 -EINVAL);
	tdev_close(&t);
	/* A BAR size that is not a power of two. */
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "region 0 size=12288 flags=3\n"), -EINVAL);
	tdev_close(&t);
	/* A 64-bit BAR whose upper half is a region too. */
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "region 0 size=4096 flags=3\n"
						      "region 1 size=4096 flags=3\n"
						      "config 0x10 04 00 00 00\n"),
			 -EINVAL);
	tdev_close(&t);
	/* A bridge header. */
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "config 0x0e 01\n"), -ENOTSUP);
	tdev_close(&t);
	(void)state;
}

/*
 * A device whose IRQ table is over vfio-pci's limits (a HANDOFF can say so; an image cannot) is
 * refused, and the refusal closes nothing it does not own: the IRQ indexes after the bad one
 * used to keep a zeroed resample fd, and freeing them closed fd 0 (found by fuzz_worker_brk).
 */
static void test_cfg_irq_table_over_limits_rejected_closes_nothing(void **state)
{
	struct tdev t;
	struct wkr_devinfo info;
	struct wkr_dev *d = NULL;
	struct wkr_io io;
	struct wkr_callbacks cb = {rec_set_irqs, rec_bars_changed, &t.rec};
	int null = -1, fd0 = fcntl(0, F_GETFD) >= 0 ? -1 : (null = open("/dev/null", O_RDONLY));

	/* fd 0 is open from here on (the test runner's, or /dev/null when it had none). */
	assert_true(fd0 < 0 || fd0 == 0);
	assert_int_equal(tdev_open_text(&t, MINI_HEAD), 0);
	info = *wkr_image_info(t.img);
	wkr_io_from_fd(&io, t.fd);
	info.irqs[VFIO_PCI_MSI_IRQ_INDEX] = (struct wkr_irq_info){VFIO_IRQ_INFO_EVENTFD, 33};
	info.irqs[VFIO_PCI_MSIX_IRQ_INDEX] = (struct wkr_irq_info){VFIO_IRQ_INFO_EVENTFD, 4};
	assert_int_equal(wkr_dev_new(&info, &io, &cb, &d), -EINVAL);
	assert_null(d);
	assert_true(fcntl(0, F_GETFD) >= 0);
	assert_true(fcntl(t.fd, F_GETFD) >= 0);
	tdev_close(&t);
	if (null >= 0)
		close(null);
	(void)state;
}

static void test_cfg_capability_loop_terminates(void **state)
{
	struct tdev t;
	uint8_t ids[64];

	/* PM at 0x40 pointing to MSI at 0x50 pointing back to 0x40. */
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "config 0x34 40\n"
						      "config 0x40 01 50 03 00 00 00 00 00\n"
						      "config 0x50 05 40 00 00\n"),
			 0);
	assert_int_equal(walk_std(&t, ids, 64), 2);
	assert_int_equal(ids[0], PCI_CAP_ID_PM);
	assert_int_equal(ids[1], PCI_CAP_ID_MSI);
	tdev_close(&t);
	(void)state;
}

/* A PCIe v1 capability is 0x14 bytes, but its permission table reaches DEVCTL2 at +0x28: here
 * that is the data register of a 32-bit MSI capability installed before it. The MSI data must
 * stay the worker's (virtual), never the device's. */
static void test_cfg_short_capability_lends_no_permissions(void **state)
{
	struct tdev t;

	assert_int_equal(tdev_open_text(&t, MINI_HEAD "config 0x34 80\n"
						      "config 0x80 05 60 00 00 00 00 00 00 aa bb\n"
						      "config 0x60 10 00 01 00\n"
						      "irq 1 count=1 flags=7\n"),
			 0);
	assert_int_equal(cfg_rd(&t, 0x88, 2), 0);
	assert_int_equal(cfg_wr(&t, 0x88, 2, 0x1234), 0);
	assert_int_equal(cfg_rd(&t, 0x88, 2), 0x1234);
	assert_int_equal(phys_rd(&t, 0x88, 2), 0xbbaa);
	tdev_close(&t);
	(void)state;
}

static void test_cfg_no_intx_irq_clears_interrupt_pin(void **state)
{
	struct tdev t;

	assert_int_equal(tdev_open_text(&t, MINI_HEAD "config 0x3d 01\n"), 0);
	assert_int_equal(cfg_rd(&t, PCI_INTERRUPT_PIN, 1), 0);
	tdev_close(&t);
	assert_int_equal(tdev_open_text(&t, MINI_HEAD "config 0x3d 01\n"
						      "irq 0 count=1 flags=7\n"),
			 0);
	assert_int_equal(cfg_rd(&t, PCI_INTERRUPT_PIN, 1), 1);
	tdev_close(&t);
	(void)state;
}

static void test_cfg_e1000e_capture_capabilities_visible(void **state)
{
	struct tdev t;
	uint8_t ids[64];
	int n;
	const uint8_t want[] = {PCI_CAP_ID_PM, PCI_CAP_ID_MSI, PCI_CAP_ID_EXP, PCI_CAP_ID_MSIX};

	assert_int_equal(tdev_open_fixture(&t, "e1000e.img"), 0);
	assert_int_equal(cfg_rd(&t, PCI_VENDOR_ID, 2), 0x8086);
	n = walk_std(&t, ids, 64);
	assert_int_equal(n, 4);
	assert_memory_equal(ids, want, 4);
	/* The host's BAR addresses are not shown; the I/O BAR keeps its type. */
	assert_int_equal(cfg_rd(&t, PCI_BASE_ADDRESS_0, 4), 0);
	assert_int_equal(cfg_rd(&t, PCI_BASE_ADDRESS_2, 4), 1);
	assert_int_equal(cfg_wr(&t, PCI_BASE_ADDRESS_2, 4, 0xffffffff), 0);
	assert_int_equal(cfg_rd(&t, PCI_BASE_ADDRESS_2, 4), 0xffffffe1);
	assert_int_equal(cfg_rd(&t, 0x100, 2), PCI_EXT_CAP_ID_ERR);
	tdev_close(&t);
	(void)state;
}

static void test_cfg_nvme_capture_64bit_bar(void **state)
{
	struct tdev t;

	assert_int_equal(tdev_open_fixture(&t, "nvme.img"), 0);
	assert_int_equal(cfg_wr(&t, PCI_BASE_ADDRESS_0, 4, 0xffffffff), 0);
	assert_int_equal(cfg_wr(&t, PCI_BASE_ADDRESS_1, 4, 0xffffffff), 0);
	assert_int_equal(cfg_rd(&t, PCI_BASE_ADDRESS_0, 4), 0xffffc004);
	assert_int_equal(cfg_rd(&t, PCI_BASE_ADDRESS_1, 4), 0xffffffff);
	tdev_close(&t);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define SPEC_TEST(f) cmocka_unit_test_setup_teardown(f, setup_spec, teardown)
	    SPEC_TEST(test_cfg_bar32_sizing_probe_returns_size_mask),
	    SPEC_TEST(test_cfg_bar64_sizing_probe_returns_both_halves),
	    SPEC_TEST(test_cfg_io_bar_sizing_probe_keeps_io_bit),
	    SPEC_TEST(test_cfg_rom_sizing_probe_keeps_enable_bit),
	    SPEC_TEST(test_cfg_unimplemented_bar_reads_zero),
	    SPEC_TEST(test_cfg_command_memory_enable_notifies_bars_changed),
	    SPEC_TEST(test_cfg_status_rw1c_bits_not_written_back),
	    SPEC_TEST(test_cfg_failed_reset_leaves_nothing_routed),
	    SPEC_TEST(test_cfg_header_type_multifunction_bit_masked),
	    SPEC_TEST(test_cfg_identity_read_only),
	    SPEC_TEST(test_cfg_ext_caps_sriov_ari_rebar_hidden),
	    SPEC_TEST(test_cfg_read_crossing_capabilities_matches_bytewise),
	    SPEC_TEST(test_cfg_write_crossing_capabilities_obeys_each),
	    SPEC_TEST(test_cfg_access_past_end_rejected_untouched),
	    SPEC_TEST(test_cfg_msi_enable_requests_set_irqs),
	    SPEC_TEST(test_cfg_msi_vector_count_clamped_to_capable),
	    SPEC_TEST(test_cfg_msi_masked_vector_pending_then_delivered),
	    SPEC_TEST(test_cfg_pcie_flr_bit_stays_virtual),
	    SPEC_TEST(test_cfg_reset_keeps_bars_and_command_clears_msi),
	    SPEC_TEST(test_cfg_reset_routes_intx_again),
	    cmocka_unit_test(test_cfg_bad_region_table_rejected),
	    cmocka_unit_test(test_cfg_irq_table_over_limits_rejected_closes_nothing),
	    cmocka_unit_test(test_cfg_capability_loop_terminates),
	    cmocka_unit_test(test_cfg_short_capability_lends_no_permissions),
	    cmocka_unit_test(test_cfg_no_intx_irq_clears_interrupt_pin),
	    cmocka_unit_test(test_cfg_e1000e_capture_capabilities_visible),
	    cmocka_unit_test(test_cfg_nvme_capture_64bit_bar),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
