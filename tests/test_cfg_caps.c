/*
 * Tests of the worker's capability table (worker/caps.c) against the kernel's vfio-pci
 * (drivers/vfio/pci/vfio_pci_config.c): for each capability kind, on a device image that has
 * it, which capabilities the guest sees in both lists and what a guest write does (reaches the
 * device, is dropped, or stays virtual). The memfd behind the device plays the device fd, so
 * each test sees exactly what reached "hardware".
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "base.h"
#include "wkr_test_util.h"

#define KINDS "caps_every_kind.img"
#define SPEC  "pcie_spec_sriov_ari_rebar.img"

static int setup_kinds(void **state)
{
	struct tdev *t = calloc(1, sizeof(*t));

	if (!t || tdev_open_fixture(t, KINDS) < 0)
		return -1;
	*state = t;
	return 0;
}

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

static int walk_ext(struct tdev *t, uint16_t *ids, int max)
{
	int n = 0;
	uint32_t pos = 0x100;

	while (pos && n < max) {
		uint32_t h = cfg_rd(t, pos, 4);

		ids[n++] = (uint16_t)h;
		pos = h >> 20;
	}
	return n;
}

static void test_cfg_caps_std_list_shows_what_the_kernel_shows(void **state)
{
	struct tdev *t = *state;
	uint8_t ids[64];
	const uint8_t want[] = {PCI_CAP_ID_PM, PCI_CAP_ID_AGP,	PCI_CAP_ID_VPD,	 PCI_CAP_ID_PCIX,
				PCI_CAP_ID_HT, PCI_CAP_ID_VNDR, PCI_CAP_ID_SATA, PCI_CAP_ID_AF};
	int n = walk_std(t, ids, 64);

	assert_int_equal(n, sizeof(want));
	assert_memory_equal(ids, want, sizeof(want));
	/* Slot ID, Subsystem ID and Enhanced Allocation are hidden: their bytes read as zero. */
	for (uint32_t off = 0x94; off < 0xa8; off += 4)
		assert_int_equal(cfg_rd(t, off, 4), 0);
	assert_int_equal(phys_rd(t, 0x98, 1), PCI_CAP_ID_SSVID);
}

static void test_cfg_caps_ext_list_shows_what_the_kernel_shows(void **state)
{
	struct tdev *t = *state;
	uint16_t ids[64];
	const uint16_t want[] = {PCI_EXT_CAP_ID_ERR,  PCI_EXT_CAP_ID_VC,   PCI_EXT_CAP_ID_DSN,
				 PCI_EXT_CAP_ID_PWR,  PCI_EXT_CAP_ID_VNDR, PCI_EXT_CAP_ID_ACS,
				 PCI_EXT_CAP_ID_ATS,  PCI_EXT_CAP_ID_PRI,  PCI_EXT_CAP_ID_DPA,
				 PCI_EXT_CAP_ID_TPH,  PCI_EXT_CAP_ID_LTR,  PCI_EXT_CAP_ID_DVSEC,
				 PCI_EXT_CAP_ID_MFVC, PCI_EXT_CAP_ID_VC9};
	int n = walk_ext(t, ids, 64);

	assert_int_equal(n, ARRAY_SIZE(want));
	assert_memory_equal(ids, want, sizeof(want));
	/* DVSEC links straight to MFVC over the hidden Secondary PCIe, L1SS, PTM, Multicast and
	 * PASID, whose bytes read as zero. */
	assert_int_equal(cfg_rd(t, 0x1e0, 4) >> 20, 0x270);
	for (uint32_t off = 0x200; off < 0x270; off += 4)
		assert_int_equal(cfg_rd(t, off, 4), 0);
}

/* A register the guest writes: does the write reach the device, and does a read show the
 * device? `raw`: written through; otherwise dropped (read-only, or hidden and reading zero). */
struct perm_case {
	const char *what;
	uint32_t off;
	size_t len;
	bool raw;
	bool hidden;
};

static const struct perm_case perm_cases[] = {
    {"VPD address (the kernel's VPD emulation)", 0x56, 2, true, false},
    {"VPD data", 0x58, 4, true, false},
    {"PCI-X command", 0x5e, 2, true, false},
    {"vendor-specific window address", 0x84, 4, true, false},
    {"vendor-specific window data", 0x88, 4, true, false},
    {"gap after the last standard capability", 0xf0, 4, true, false},
    {"gap after AER", 0x12c, 4, true, false},
    {"power budgeting data select", 0x164, 1, true, false},
    {"vendor-specific extended body", 0x17c, 4, true, false},
    {"DVSEC body", 0x1ec, 4, true, false},
    {"AGP command", 0x50, 4, false, false},
    {"HyperTransport", 0x68, 4, false, false},
    {"SATA", 0x90, 4, false, false},
    {"VC port control", 0x13c, 4, false, false},
    {"DSN", 0x154, 4, false, false},
    {"power budgeting data", 0x168, 4, false, false},
    {"ACS control", 0x196, 2, false, false},
    {"ATS control", 0x19e, 2, false, false},
    {"PRI control", 0x1a4, 2, false, false},
    {"DPA control", 0x1bc, 4, false, false},
    {"TPH control", 0x1d0, 4, false, false},
    {"LTR", 0x1dc, 4, false, false},
    {"MFVC", 0x27c, 4, false, false},
    {"VC9", 0x29c, 4, false, false},
    {"hidden Subsystem ID", 0x9c, 4, false, true},
    {"hidden Enhanced Allocation", 0xa4, 4, false, true},
    {"hidden Secondary PCIe", 0x208, 4, false, true},
    {"hidden Multicast", 0x240, 4, false, true},
};

static void test_cfg_caps_writes_reach_device_as_kernel_allows(void **state)
{
	struct tdev *t = *state;

	for (size_t i = 0; i < ARRAY_SIZE(perm_cases); i++) {
		const struct perm_case *c = &perm_cases[i];
		uint32_t mask = c->len == 4 ? 0xffffffffu : (1u << (8 * c->len)) - 1;
		uint32_t before = 0x5a6b7c8du & mask, val = 0x12345678u & mask;

		print_message("%s at %#x\n", c->what, c->off);
		assert_int_equal(phys_wr(t, c->off, c->len, before), 0);
		assert_int_equal(cfg_wr(t, c->off, c->len, val), 0);
		assert_int_equal(phys_rd(t, c->off, c->len), c->raw ? val : before);
		assert_int_equal(cfg_rd(t, c->off, c->len),
				 c->hidden ? 0 : phys_rd(t, c->off, c->len));
	}
}

/* PME support, enable and status are the host's: they read as zero and stay on the device;
 * the power state and Data Select go to the device (the kernel performs the transition). */
static void test_cfg_caps_pm_pme_virtual_state_written(void **state)
{
	struct tdev *t = *state;
	uint16_t w = 3 | (1 << 9) | PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS;

	assert_int_equal(cfg_rd(t, 0x40 + PCI_PM_PMC, 2), 0x0003);
	assert_int_equal(cfg_rd(t, 0x40 + PCI_PM_CTRL, 2), PCI_PM_CTRL_NO_SOFT_RESET);
	assert_int_equal(cfg_wr(t, 0x40 + PCI_PM_CTRL, 2, w), 0);
	assert_int_equal(phys_rd(t, 0x40 + PCI_PM_CTRL, 2), 0x8108 | 3 | (1 << 9));
	assert_int_equal(cfg_rd(t, 0x40 + PCI_PM_CTRL, 2), 0x0008 | 3 | (1 << 9));
}

/* Initiate FLR is virtual and reads as zero; on a function with FLR and Transactions Pending
 * it asks for a reset, once, as the kernel's write handler resets the function. */
static void test_cfg_caps_af_flr_requests_reset(void **state)
{
	struct tdev *t = *state;

	assert_false(wkr_dev_take_flr(t->dev));
	assert_int_equal(cfg_wr(t, 0xa8 + PCI_AF_CTRL, 1, PCI_AF_CTRL_FLR), 0);
	assert_true(wkr_dev_take_flr(t->dev));
	assert_false(wkr_dev_take_flr(t->dev));
	assert_int_equal(phys_rd(t, 0xa8 + PCI_AF_CTRL, 1), 0);
	assert_int_equal(cfg_rd(t, 0xa8 + PCI_AF_CTRL, 1), 0);
	assert_int_equal(cfg_rd(t, 0xa8 + PCI_AF_CAP, 1), PCI_AF_CAP_FLR | PCI_AF_CAP_TP);
}

/* PCI Express Initiate FLR: a reset request when Device Capabilities has FLR (the
 * specification image does), never a write to the device, and it reads as zero. */
static void test_cfg_caps_pcie_flr_requests_reset(void **state)
{
	struct tdev *t = *state;
	const uint32_t devctl = 0x80 + PCI_EXP_DEVCTL;
	uint32_t before = phys_rd(t, devctl, 2);

	assert_int_equal(cfg_wr(t, devctl, 2, before | PCI_EXP_DEVCTL_BCR_FLR), 0);
	assert_true(wkr_dev_take_flr(t->dev));
	assert_false(wkr_dev_take_flr(t->dev));
	assert_int_equal(phys_rd(t, devctl, 2), before);
	assert_int_equal(cfg_rd(t, devctl, 2) & PCI_EXP_DEVCTL_BCR_FLR, 0);
}

/* Without FLR in Device Capabilities the bit does nothing, as in the kernel. */
static void test_cfg_caps_pcie_flr_without_capability_ignored(void **state)
{
	struct tdev t;

	(void)state;
	assert_int_equal(tdev_open_text(&t,
					"vfio-device-image 1\n"
					"device flags=0x3\n"
					"region 7 size=256 flags=0x3\n"
					"config 0 34 12 78 56 00 00 10 00 00 00 00 ff 00 00 00 00\n"
					"config 0x34 40\n"
					"config 0x40 10 00 02 00 00 80 00 00 10 28 00 00\n"),
			 0);
	assert_int_equal(cfg_wr(&t, 0x40 + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR), 0);
	assert_false(wkr_dev_take_flr(t.dev));
	assert_int_equal(cfg_rd(&t, 0x40 + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR, 0);
	tdev_close(&t);
}

/* AER: the error bits of status (RW1C: a 0 never writes a set bit back), mask and severity,
 * and the ECRC enables in the capabilities register; nothing else. */
static void test_cfg_caps_aer_error_bits_only(void **state)
{
	struct tdev *t = *state;
	const uint32_t unc = PCI_ERR_UNC_UND | PCI_ERR_UNC_DLP | PCI_ERR_UNC_SURPDN |
			     PCI_ERR_UNC_POISON_TLP | PCI_ERR_UNC_FCP | PCI_ERR_UNC_COMP_TIME |
			     PCI_ERR_UNC_COMP_ABORT | PCI_ERR_UNC_UNX_COMP | PCI_ERR_UNC_RX_OVER |
			     PCI_ERR_UNC_MALF_TLP | PCI_ERR_UNC_ECRC | PCI_ERR_UNC_UNSUP |
			     PCI_ERR_UNC_ACSV | PCI_ERR_UNC_INTN | PCI_ERR_UNC_MCBTLP |
			     PCI_ERR_UNC_ATOMEG | PCI_ERR_UNC_TLPPRE;
	const uint32_t aer = 0x100;

	/* Writing 0 writes 0 to the status bits (RW1C hardware keeps them; the memfd does not
	 * emulate that): the set bit the worker read was not written back as 1. */
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_UNCOR_STATUS, 4, 0), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_UNCOR_STATUS, 4), 0);
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_UNCOR_STATUS, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_UNCOR_STATUS, 4), unc);
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_UNCOR_MASK, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_UNCOR_MASK, 4), unc);
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_UNCOR_SEVER, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_UNCOR_SEVER, 4), unc);
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_CAP, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_CAP, 4),
			 PCI_ERR_CAP_ECRC_GENC | PCI_ERR_CAP_ECRC_CHKC | PCI_ERR_CAP_ECRC_GENE |
			     PCI_ERR_CAP_ECRC_CHKE);
	/* The header log is read-only. */
	assert_int_equal(cfg_wr(t, aer + PCI_ERR_HEADER_LOG, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, aer + PCI_ERR_HEADER_LOG, 4), 0);
}

/* The case: firmware talked to through a vendor capability window. The driver writes
 * the window's address, and the data the device put there reads back through the worker. */
static void test_cfg_caps_vendor_window_reaches_device(void **state)
{
	struct tdev *t = *state;

	assert_int_equal(cfg_wr(t, 0x84, 4, 0x00000010), 0);
	assert_int_equal(phys_rd(t, 0x84, 4), 0x00000010);
	assert_int_equal(phys_wr(t, 0x88, 4, 0xcafef00d), 0); /* the device answers */
	assert_int_equal(cfg_rd(t, 0x88, 4), 0xcafef00d);
	/* Its header stays the worker's: id and next cannot be rewritten. */
	assert_int_equal(cfg_wr(t, 0x80, 2, 0xffff), 0);
	assert_int_equal(cfg_rd(t, 0x80, 2), 0x8c09);
}

/* PCI Express: Device Control without Phantom Functions and FLR, Device Control 2 without ARI
 * Forwarding; Link Control and the status registers read-only, as in the kernel. */
static void test_cfg_caps_pcie_control_masks(void **state)
{
	struct tdev *t = *state;
	const uint32_t exp = 0x80;
	uint32_t lnk;

	assert_int_equal(cfg_wr(t, exp + PCI_EXP_DEVCTL, 2, 0xffff), 0);
	assert_int_equal(phys_rd(t, exp + PCI_EXP_DEVCTL, 2),
			 0xffff & ~(PCI_EXP_DEVCTL_PHANTOM | PCI_EXP_DEVCTL_BCR_FLR));
	assert_int_equal(cfg_rd(t, exp + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR, 0);
	assert_true(wkr_dev_take_flr(t->dev));
	assert_int_equal(cfg_wr(t, exp + PCI_EXP_DEVCTL2, 2, 0xffff), 0);
	assert_int_equal(phys_rd(t, exp + PCI_EXP_DEVCTL2, 2), 0xffff & ~PCI_EXP_DEVCTL2_ARI);
	lnk = phys_rd(t, exp + PCI_EXP_LNKCTL, 4);
	assert_int_equal(cfg_wr(t, exp + PCI_EXP_LNKCTL, 4, 0xffffffff), 0);
	assert_int_equal(phys_rd(t, exp + PCI_EXP_LNKCTL, 4), lnk);
	assert_int_equal(cfg_wr(t, exp + PCI_EXP_DEVSTA, 2, 0xffff), 0);
	assert_int_equal(phys_rd(t, exp + PCI_EXP_DEVSTA, 2), 0);
}

/* VPD on the specification image: visible, and its registers reach the device. */
static void test_cfg_caps_spec_vpd_visible(void **state)
{
	struct tdev *t = *state;
	uint8_t ids[64];
	const uint8_t want[] = {PCI_CAP_ID_PM,	PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX,
				PCI_CAP_ID_EXP, PCI_CAP_ID_VPD, PCI_CAP_ID_VNDR};

	assert_int_equal(walk_std(t, ids, 64), sizeof(want));
	assert_memory_equal(ids, want, sizeof(want));
	assert_int_equal(cfg_wr(t, 0xc0 + PCI_VPD_ADDR, 2, 0x0004), 0);
	assert_int_equal(phys_rd(t, 0xc0 + PCI_VPD_ADDR, 2), 0x0004);
}

/* A capability whose length the worker computes from its registers: the last byte of that
 * length is the capability's (read-only here), the next one is a gap (raw). */
struct len_case {
	const char *what;
	const char *config; /* config lines placing one capability at 0x40 or 0x100 */
	uint32_t off;
	uint32_t len;
};

static const struct len_case len_cases[] = {
    {"PCI-X version 1", "config 0x34 40\nconfig 0x40 07 00 00 10\n", 0x40, 24},
    {"HyperTransport host", "config 0x34 40\nconfig 0x40 08 00 00 20\n", 0x40, 24},
    {"SATA inline", "config 0x34 40\nconfig 0x40 12 00 10 00 0f\n", 0x40, 16},
    {"PCIe v2 integrated endpoint", "config 0x34 40\nconfig 0x40 10 00 92 00\n", 0x40, 0x2c},
    {"VC, one extended VC, 32-phase arbitration",
     "config 0x100 02 00 01 00 01 00 00 00 02 00 00 00\n", 0x100, 0x40},
    {"ACS with egress control, 256 bits", "config 0x100 0d 00 01 00 20 00\n", 0x100, 0x28},
    {"DPA, four substates", "config 0x100 16 00 01 00 03\n", 0x100, 20},
    {"TPH, three steering entries in the capability", "config 0x100 17 00 01 00 00 02 03 00\n",
     0x100, 0x14},
};

static void test_cfg_caps_computed_lengths_end_where_kernel_ends_them(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(len_cases); i++) {
		const struct len_case *c = &len_cases[i];
		char text[1024];
		struct tdev t;

		snprintf(text, sizeof(text),
			 "vfio-device-image 1\ndevice flags=0x3\nregion 7 size=4096 flags=0x3\n"
			 "config 0 34 12 78 56 00 00 10 00 00 00 00 ff 00 00 00 00\n%s",
			 c->config);
		print_message("%s: %u bytes at %#x\n", c->what, c->len, c->off);
		assert_int_equal(tdev_open_text(&t, text), 0);
		assert_int_equal(cfg_wr(&t, c->off + c->len - 1, 1, 0xa5), 0);
		assert_int_equal(phys_rd(&t, c->off + c->len - 1, 1), 0);
		assert_int_equal(cfg_wr(&t, c->off + c->len, 1, 0xa5), 0);
		assert_int_equal(phys_rd(&t, c->off + c->len, 1), 0xa5);
		tdev_close(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define KINDS_TEST(f) cmocka_unit_test_setup_teardown(f, setup_kinds, teardown)
#define SPEC_TEST(f)  cmocka_unit_test_setup_teardown(f, setup_spec, teardown)
	    KINDS_TEST(test_cfg_caps_std_list_shows_what_the_kernel_shows),
	    KINDS_TEST(test_cfg_caps_ext_list_shows_what_the_kernel_shows),
	    KINDS_TEST(test_cfg_caps_writes_reach_device_as_kernel_allows),
	    KINDS_TEST(test_cfg_caps_pm_pme_virtual_state_written),
	    KINDS_TEST(test_cfg_caps_af_flr_requests_reset),
	    KINDS_TEST(test_cfg_caps_aer_error_bits_only),
	    KINDS_TEST(test_cfg_caps_vendor_window_reaches_device),
	    SPEC_TEST(test_cfg_caps_pcie_control_masks),
	    SPEC_TEST(test_cfg_caps_spec_vpd_visible),
	    SPEC_TEST(test_cfg_caps_pcie_flr_requests_reset),
	    cmocka_unit_test(test_cfg_caps_pcie_flr_without_capability_ignored),
	    cmocka_unit_test(test_cfg_caps_computed_lengths_end_where_kernel_ends_them),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
