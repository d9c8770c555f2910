/*
 * test_vfio: containers, groups and devices (broker/vfio.c, vfio_device.c, device_pb.c) against
 * the fake VFIO kernel: API and IOMMU type selection, iommufd reporting, viability messages,
 * sharing and detaching, region info with capability chains (re-query on a larger argsz,
 * sparse areas, MSI-X mappable, malformed chains), IRQ info, reset, and the handoff lists.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "device_pb.h"
#include "fake_vfio.h"
#include "irq.h"
#include "sysfs_tree.h"
#include "vfio.h"

#define BDF "0000:00:03.0"

struct t {
	struct fake_vfio f;
	struct vb_err err;
	struct brk_container *c;
	struct brk_group *g;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));

	fake_vfio_init(&t->f);
	tree_new(t->f.root, sizeof(t->f.root));
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	brk_group_unref(t->g);
	brk_container_unref(t->c);
	tree_free(t->f.root);
	free(t);
	return 0;
}

/* Container plus one attached group, as the daemon does it. */
static void open_attached(struct t *t)
{
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
}

/* An edu-like device: BAR0 1 MiB mmappable, BAR2 64 KiB with the MSI-X table carved out
 * (two sparse areas, MSI-X mappable), config space; INTx, MSI; no VGA. */
static void edu_like(struct fake_vfio *f)
{
	static const struct vfio_region_sparse_mmap_area areas[] = {{0x0, 0x3000},
								    {0x4000, 0xc000}};
	uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

	fake_region_plain(f, 0, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x100000, 0);
	fake_region_sparse(f, 2, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x10000, 2ull << 40, areas, 2,
			   true);
	fake_region_plain(f, VFIO_PCI_CONFIG_REGION_INDEX, rw, 0x1000, 7ull << 40);
	fake_irq(f, VFIO_PCI_INTX_IRQ_INDEX,
		 VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1);
	fake_irq(f, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1);
}

static void test_container_new_api_mismatch_rejected(void **state)
{
	struct t *t = *state;

	t->f.api_version = 1;
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), -EPROTO);
	assert_non_null(strstr(t->err.msg, "API version 1"));
	assert_null(t->c);
}

static void test_container_new_without_type1_rejected(void **state)
{
	struct t *t = *state;

	t->f.has_type1 = t->f.has_type1v2 = false;
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), -ENODEV);
	assert_non_null(strstr(t->err.msg, "vfio_iommu_type1"));
	assert_null(t->c);
}

static void test_container_new_missing_node_explained(void **state)
{
	struct t *t = *state;

	t->f.open_err = -ENOENT;
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), -ENOENT);
	assert_non_null(strstr(t->err.msg, "/dev/vfio/vfio"));
	assert_non_null(strstr(t->err.msg, "vfio module loaded"));
	/* The path is under the root. */
	assert_memory_equal(t->f.last_open, t->f.root, strlen(t->f.root));
}

static void test_container_iommufd_absence_reported(void **state)
{
	struct t *t = *state;
	struct brk_container *c2;

	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_string_equal(brk_container_backend_note(t->c),
			    "iommufd not available (no /dev/iommu, no /dev/vfio/devices), using "
			    "the VFIO container");
	assert_false(brk_container_info(t->c)->iommufd_present);
	tree_file(t->f.root, "dev/iommu", "");
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &c2), 0);
	assert_true(brk_container_info(c2)->iommufd_present);
	assert_non_null(strstr(brk_container_backend_note(c2), "no VFIO device cdev"));
	assert_non_null(strstr(brk_container_backend_note(c2), "using the VFIO container"));
	brk_container_unref(c2);
	tree_dir(t->f.root, "dev/vfio/devices");
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &c2), 0);
	assert_true(brk_container_info(c2)->vfio_cdev_present);
	assert_non_null(strstr(brk_container_backend_note(c2), "iommufd present"));
	brk_container_unref(c2);
}

static void test_group_attach_first_selects_type1v2(void **state)
{
	struct t *t = *state;
	const struct brk_container_info *i;
	struct brk_group *g2;

	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_string_equal(brk_container_backend_name(t->c), "none");
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
	i = brk_container_info(t->c);
	assert_int_equal(i->type, BRK_IOMMU_TYPE1V2);
	assert_string_equal(brk_container_backend_name(t->c), "vfio-type1v2");
	assert_int_equal(i->iova_pgsizes, t->f.iova_pgsizes);
	assert_int_equal(i->min_pgsize, 0x1000);
	assert_true(i->has_dma_avail);
	assert_int_equal(i->dma_avail, 65535);
	/* GET_INFO was asked twice: the capability did not fit the first time. */
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_GET_INFO), 2);
	assert_int_equal(fake_vfio_nth(&t->f, VFIO_SET_IOMMU, 0)->arg, VFIO_TYPE1v2_IOMMU);
	assert_int_equal(fake_vfio_nth(&t->f, VFIO_GROUP_SET_CONTAINER, 0)->arg,
			 brk_container_fd(t->c));
	/* A second group shares the container and does not set the IOMMU again. */
	assert_int_equal(brk_group_open(&t->f.sys, 6, &t->err, &g2), 0);
	assert_int_equal(brk_group_attach(g2, t->c, &t->err), 0);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_SET_IOMMU), 1);
	assert_int_equal(i->groups, 2);
	assert_ptr_equal(brk_group_container(g2), t->c);
	/* Attaching again is a no-op. */
	assert_int_equal(brk_group_attach(g2, t->c, &t->err), 0);
	assert_int_equal(i->groups, 2);
	brk_group_unref(g2);
	assert_int_equal(i->groups, 1);
}

static void test_container_dma_avail_requeried(void **state)
{
	struct t *t = *state;
	uint32_t avail = 0;

	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_int_equal(brk_container_dma_avail(t->c, &avail), -ENODEV);
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
	t->f.dma_avail = 65000;
	assert_int_equal(brk_container_dma_avail(t->c, &avail), 0);
	assert_int_equal(avail, 65000);
	assert_int_equal(brk_container_info(t->c)->dma_avail, 65000);
	t->f.dma_avail_cap = false;
	assert_int_equal(brk_container_dma_avail(t->c, &avail), -EOPNOTSUPP);
	assert_int_equal(brk_container_info(t->c)->min_pgsize, 0x1000);
}

static void test_container_iova_ranges_reach_dma_cfg(void **state)
{
	struct t *t = *state;
	const struct brk_container_info *i;
	struct brk_dma_cfg cfg = {.pgsize = 1};

	t->f.n_iova_ranges = 2;
	t->f.iova_ranges[0] = (struct vfio_iova_range){0, 0xfedfffff};
	t->f.iova_ranges[1] = (struct vfio_iova_range){0xfef00000, (1ull << 39) - 1};
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_int_equal(brk_container_dma_cfg(t->c, &cfg), -ENODEV);
	assert_int_equal(cfg.pgsize, 1);
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
	i = brk_container_info(t->c);
	/* Both capabilities of the chain were read. */
	assert_true(i->has_dma_avail);
	assert_int_equal(i->n_iova_ranges, 2);
	assert_int_equal(i->iova_ranges[1].start, 0xfef00000);
	assert_int_equal(i->iova_ranges[1].end, (1ull << 39) - 1);
	assert_int_equal(brk_container_dma_cfg(t->c, &cfg), 0);
	assert_int_equal(cfg.container_fd, brk_container_fd(t->c));
	assert_int_equal(cfg.pgsize, 0x1000);
	assert_int_equal(cfg.n_ranges, 2);
	assert_int_equal(cfg.ranges[0].end, 0xfedfffff);
}

static void test_container_iova_range_backwards_ignored(void **state)
{
	struct t *t = *state;

	t->f.n_iova_ranges = 1;
	t->f.iova_ranges[0] = (struct vfio_iova_range){0x2000, 0x1000};
	open_attached(t);
	assert_int_equal(brk_container_info(t->c)->n_iova_ranges, 0);
}

static void test_group_attach_falls_back_to_type1(void **state)
{
	struct t *t = *state;

	t->f.set_iommu_v2_err = -EINVAL; /* advertised, but refused for this group */
	t->f.dma_avail_cap = false;
	open_attached(t);
	assert_int_equal(brk_container_info(t->c)->type, BRK_IOMMU_TYPE1);
	assert_string_equal(brk_container_backend_name(t->c), "vfio-type1");
	assert_false(brk_container_info(t->c)->has_dma_avail);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_SET_IOMMU), 2);
	assert_int_equal(fake_vfio_nth(&t->f, VFIO_SET_IOMMU, 1)->arg, VFIO_TYPE1_IOMMU);
	/* One GET_INFO: without the capability the base struct was enough. */
	assert_int_equal(fake_vfio_count(&t->f, VFIO_IOMMU_GET_INFO), 1);
}

static void test_group_attach_to_second_container_rejected(void **state)
{
	struct t *t = *state;
	struct brk_container *c2;

	open_attached(t);
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &c2), 0);
	assert_int_equal(brk_group_attach(t->g, c2, &t->err), -EBUSY);
	assert_non_null(strstr(t->err.msg, "another container"));
	assert_int_equal(brk_container_info(c2)->groups, 0);
	brk_container_unref(c2);
}

static void test_group_not_viable_lists_unbound_devices(void **state)
{
	struct t *t = *state;

	tree_pci_device(t->f.root, "0000:00:03.0", "vfio-pci", 7);
	tree_pci_device(t->f.root, "0000:00:03.1", "e1000e", 7);
	tree_pci_device(t->f.root, "0000:00:03.2", NULL, 7);
	t->f.group_viable = false;
	assert_int_equal(brk_group_open(&t->f.sys, 7, &t->err, &t->g), -EBUSY);
	assert_null(t->g);
	assert_non_null(strstr(t->err.msg, "bind every device of IOMMU group 7 to vfio-pci"));
	assert_non_null(strstr(t->err.msg, "0000:00:03.1 (e1000e)"));
	assert_non_null(strstr(t->err.msg, "0000:00:03.2 (no driver)"));
	assert_null(strstr(t->err.msg, "0000:00:03.0"));
}

/* Issue 13 #4: a group another VM of this broker holds is refused naming that VM and the rule,
 * without asking the kernel (which would only say EBUSY). */
static void test_group_open_held_by_other_vm_names_it(void **state)
{
	struct t *t = *state;
	struct brk_group *g2 = NULL;
	unsigned opens;

	open_attached(t);
	brk_group_set_owner(t->g, "vm web1 (0000:00:03.0)");
	opens = fake_vfio_count(&t->f, VFIO_GROUP_GET_STATUS);
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &g2), -EBUSY);
	assert_null(g2);
	assert_non_null(strstr(t->err.msg, "IOMMU group 5 belongs to vm web1 (0000:00:03.0)"));
	assert_non_null(strstr(t->err.msg, "an IOMMU group belongs to one VM"));
	assert_int_equal(fake_vfio_count(&t->f, VFIO_GROUP_GET_STATUS), opens);
	/* Another group is not affected, and once released the group opens again. */
	assert_int_equal(brk_group_open(&t->f.sys, 6, &t->err, &g2), 0);
	brk_group_unref(g2);
	brk_group_unref(t->g);
	t->g = NULL;
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
}

/* The kernel's EBUSY for a group some other process has open says so, not "elsewhere". */
static void test_group_open_busy_elsewhere_says_other_process(void **state)
{
	struct t *t = *state;

	t->f.open_err = -EBUSY;
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), -EBUSY);
	assert_non_null(strstr(t->err.msg, "IOMMU group 5 is open by another process"));
}

/* Issue 13 #4: a group member vfio-pci does not drive (ENODEV from GET_DEVICE_FD) gets told to
 * bind it or use --bind; the driver it has is named. */
static void test_device_open_unbound_member_says_bind(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d = NULL;

	edu_like(&t->f);
	open_attached(t);
	tree_pci_device(t->f.root, "0000:00:03.1", NULL, 5);
	tree_pci_device(t->f.root, "0000:00:03.2", "pci-stub", 5);
	t->f.get_device_fd_err = -ENODEV;
	assert_int_equal(brk_vfio_dev_open(t->g, "0000:00:03.1", &t->err, &d), -ENODEV);
	assert_null(d);
	assert_non_null(strstr(t->err.msg, "0000:00:03.1 (IOMMU group 5) has no driver, not "
					   "vfio-pci: bind it to vfio-pci"));
	assert_non_null(strstr(t->err.msg, "--bind"));
	assert_int_equal(brk_vfio_dev_open(t->g, "0000:00:03.2", &t->err, &d), -ENODEV);
	assert_non_null(strstr(t->err.msg, "is bound to pci-stub, not vfio-pci"));
	/* On vfio-pci already, the kernel's own error stays as it is. */
	tree_pci_device(t->f.root, "0000:00:03.3", "vfio-pci", 5);
	assert_int_equal(brk_vfio_dev_open(t->g, "0000:00:03.3", &t->err, &d), -ENODEV);
	assert_non_null(strstr(t->err.msg, "VFIO_GROUP_GET_DEVICE_FD 0000:00:03.3"));
	/* The group is not left counting a device that never opened. */
	assert_int_equal(brk_group_detach(t->g), 0);
}

/* Issue 13 #3: each grant is a file of its own (a new VFIO_GROUP_GET_DEVICE_FD, never the
 * broker's), and the device remembers how many it gave and to whom. */
static void test_device_grant_opens_own_file_and_records_holder(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d;
	int g1, g2;

	edu_like(&t->f);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_vfio_dev_grants(d)->issued, 0);
	assert_int_equal(brk_vfio_dev_grant(d, 42, 1000, &g1, &t->err), 0);
	assert_int_equal(brk_vfio_dev_grant(d, 43, 1001, &g2, &t->err), 0);
	assert_true(g1 >= 0 && g2 >= 0 && g1 != g2);
	assert_true(g1 != brk_vfio_dev_fd(d) && g2 != brk_vfio_dev_fd(d));
	assert_int_equal(fake_vfio_count(&t->f, VFIO_GROUP_GET_DEVICE_FD), 3);
	assert_string_equal(fake_vfio_nth(&t->f, VFIO_GROUP_GET_DEVICE_FD, 2)->bdf, BDF);
	assert_int_equal(brk_vfio_dev_grants(d)->issued, 2);
	assert_int_equal(brk_vfio_dev_grants(d)->pid, 43);
	assert_int_equal(brk_vfio_dev_grants(d)->uid, 1001);
	close(g1);
	close(g2);
	/* A kernel refusal is the caller's to report; nothing is counted. */
	t->f.get_device_fd_err = -EMFILE;
	assert_int_equal(brk_vfio_dev_grant(d, 44, 1000, &g1, &t->err), -EMFILE);
	assert_non_null(strstr(t->err.msg, "a grant file of " BDF));
	assert_int_equal(brk_vfio_dev_grants(d)->issued, 2);
	brk_vfio_dev_free(d);
}

/* Issue 13 #3: revocation turns memory and I/O decoding and bus mastering off (what makes
 * vfio-pci zap the grant holders' mappings), keeps every other Command bit, and writes nothing
 * when they are off already. */
static void test_device_stop_decoding_clears_command_bits(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d;

	edu_like(&t->f);
	t->f.dev_flags |= VFIO_DEVICE_FLAGS_PCI;
	t->f.cfg_offset = 7ull << 40;
	t->f.cfg[4] = 0x07; /* IO | MEMORY | MASTER */
	t->f.cfg[5] = 0x04; /* INTx disable */
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_vfio_dev_stop_decoding(d, &t->err), 0);
	assert_int_equal(t->f.cfg[4], 0x00);
	assert_int_equal(t->f.cfg[5], 0x04);
	assert_int_equal(t->f.cfg_writes, 1);
	assert_int_equal(brk_vfio_dev_stop_decoding(d, &t->err), 0);
	assert_int_equal(t->f.cfg_writes, 1);
	brk_vfio_dev_free(d);
}

/* Issue 13 #3: a group the broker let go of while a grant holder keeps it open: the check says
 * so, and the next open's EBUSY names the holder instead of "another process"; once the group
 * opens again the note is gone. */
static void test_group_check_released_names_holder(void **state)
{
	struct t *t = *state;

	assert_int_equal(brk_group_check_released(&t->f.sys, 5, "grant of X went to VMM pid 42"),
			 0);
	t->f.open_err = -EBUSY;
	assert_int_equal(brk_group_check_released(&t->f.sys, 5, "grant of X went to VMM pid 42"),
			 -EBUSY);
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), -EBUSY);
	assert_non_null(strstr(t->err.msg, "IOMMU group 5 is still open: grant of X went to VMM "
					   "pid 42; it is free once that process closes the file"));
	assert_int_equal(brk_group_open(&t->f.sys, 6, &t->err, &t->g), -EBUSY);
	assert_non_null(strstr(t->err.msg, "open by another process"));
	t->f.open_err = 0;
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	brk_group_unref(t->g);
	t->g = NULL;
	t->f.open_err = -EBUSY;
	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), -EBUSY);
	assert_null(strstr(t->err.msg, "pid 42"));
}

/* Issue 13 #3: when the kernel keeps a detached group attached (a grant holder's device file),
 * the container says so: its IOMMU and mappings are still there to unmap. */
static void test_group_detach_kernel_busy_counts_held(void **state)
{
	struct t *t = *state;

	open_attached(t);
	t->f.unset_container_err = -EBUSY;
	assert_int_equal(brk_group_detach(t->g), 0);
	assert_int_equal(brk_container_info(t->c)->groups, 0);
	assert_int_equal(brk_container_info(t->c)->held_groups, 1);
}

static void test_group_detach_last_resets_type(void **state)
{
	struct t *t = *state;

	open_attached(t);
	/* The VM drops its reference: the group keeps the container alive. */
	brk_container_unref(t->c);
	assert_int_equal(brk_container_info(brk_group_container(t->g))->groups, 1);
	t->c = brk_container_ref(brk_group_container(t->g));
	assert_int_equal(brk_group_detach(t->g), 0);
	assert_null(brk_group_container(t->g));
	assert_int_equal(brk_container_info(t->c)->type, BRK_IOMMU_UNSET);
	assert_int_equal(brk_container_info(t->c)->min_pgsize, 0);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_GROUP_UNSET_CONTAINER), 1);
	/* Re-attaching selects the IOMMU again. */
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_SET_IOMMU), 2);
}

static void test_group_detach_with_open_device_busy(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d;

	edu_like(&t->f);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_group_detach(t->g), -EBUSY);
	assert_ptr_equal(brk_group_container(t->g), t->c);
	brk_vfio_dev_free(d);
	assert_int_equal(brk_group_detach(t->g), 0);
}

static void test_device_open_reads_regions_and_caps(void **state)
{
	struct t *t = *state;
	const struct brk_region *r;
	struct brk_vfio_dev *d;
	unsigned i, bar2_queries = 0;

	edu_like(&t->f);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_string_equal(fake_vfio_nth(&t->f, VFIO_GROUP_GET_DEVICE_FD, 0)->bdf, BDF);
	assert_string_equal(brk_vfio_dev_bdf(d), BDF);
	assert_int_equal(brk_vfio_dev_info(d)->num_regions, VFIO_PCI_NUM_REGIONS);
	r = brk_vfio_dev_region(d, 0);
	assert_true(r->present);
	assert_int_equal(r->size, 0x100000);
	assert_false(r->has_sparse);
	assert_int_equal(r->n_areas, 0);
	r = brk_vfio_dev_region(d, 1);
	assert_false(r->present);
	r = brk_vfio_dev_region(d, 2);
	assert_true(r->present);
	assert_int_equal(r->offset, 2ull << 40);
	assert_true(r->has_sparse);
	assert_true(r->msix_mappable);
	assert_int_equal(r->n_areas, 2);
	assert_int_equal(r->areas[0].offset, 0);
	assert_int_equal(r->areas[0].size, 0x3000);
	assert_int_equal(r->areas[1].offset, 0x4000);
	assert_int_equal(r->areas[1].size, 0xc000);
	assert_false(brk_vfio_dev_region(d, VFIO_PCI_VGA_REGION_INDEX)->present);
	assert_true(brk_vfio_dev_region(d, VFIO_PCI_CONFIG_REGION_INDEX)->present);
	assert_null(brk_vfio_dev_region(d, VFIO_PCI_NUM_REGIONS));
	/* BAR2's chain did not fit the base struct: asked again with the larger argsz. */
	for (i = 0; i < t->f.ncalls; i++)
		bar2_queries +=
		    t->f.calls[i].req == VFIO_DEVICE_GET_REGION_INFO && t->f.calls[i].index == 2;
	assert_int_equal(bar2_queries, 2);
	assert_int_equal(brk_vfio_dev_irq(d, VFIO_PCI_MSI_IRQ_INDEX)->count, 1);
	assert_int_equal(brk_vfio_dev_irq(d, VFIO_PCI_MSIX_IRQ_INDEX)->count, 0);
	assert_non_null(brk_vfio_dev_irqs(d));
	assert_int_equal(brk_irq_count(brk_vfio_dev_irqs(d)), VFIO_PCI_NUM_IRQS);
	brk_vfio_dev_free(d);
}

/* Rewrites region 2's first capability header to point at itself. */
static void test_device_open_capability_loop_rejected(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d = NULL;
	struct vfio_region_info *info;
	struct vfio_info_cap_header *h;

	edu_like(&t->f);
	info = (struct vfio_region_info *)t->f.regions[2].blob;
	h = (struct vfio_info_cap_header *)(t->f.regions[2].blob + info->cap_offset);
	h->next = info->cap_offset;
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), -EINVAL);
	assert_non_null(strstr(t->err.msg, "malformed capability chain"));
	assert_null(d);
	/* The group is not pinned by a half-opened device. */
	assert_int_equal(brk_group_detach(t->g), 0);
}

static void test_device_open_sparse_area_outside_region_rejected(void **state)
{
	struct t *t = *state;
	static const struct vfio_region_sparse_mmap_area bad[] = {{0xf000, 0x2000}};
	struct brk_vfio_dev *d = NULL;

	edu_like(&t->f);
	fake_region_sparse(&t->f, 2, VFIO_REGION_INFO_FLAG_MMAP, 0x10000, 0, bad, 1, false);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), -EINVAL);
	assert_null(d);
}

static void test_device_open_too_many_regions_rejected(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d = NULL;

	t->f.num_regions = BRK_DEVICE_MAX_REGIONS + 1;
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), -E2BIG);
	assert_non_null(strstr(t->err.msg, "too many"));
	assert_null(d);
}

static void test_device_open_bad_bdf_or_unattached_rejected(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d = NULL;

	assert_int_equal(brk_group_open(&t->f.sys, 5, &t->err, &t->g), 0);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), -EPERM);
	assert_non_null(strstr(t->err.msg, "not attached"));
	assert_int_equal(brk_container_new(&t->f.sys, &t->err, &t->c), 0);
	assert_int_equal(brk_group_attach(t->g, t->c, &t->err), 0);
	assert_int_equal(brk_vfio_dev_open(t->g, "0000:00:03.0;rm", &t->err, &d), -EINVAL);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_GROUP_GET_DEVICE_FD), 0);
	assert_null(d);
}

static void test_device_reset_needs_flag(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d;

	edu_like(&t->f);
	t->f.dev_flags = VFIO_DEVICE_FLAGS_PCI;
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_vfio_dev_reset(d, &t->err), -ENOTTY);
	assert_non_null(strstr(t->err.msg, "no reset"));
	assert_int_equal(fake_vfio_count(&t->f, VFIO_DEVICE_RESET), 0);
	assert_int_equal(brk_vfio_dev_resets(d), 0);
	brk_vfio_dev_free(d);
}

static void test_device_reset_issued_and_counted(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev *d;

	edu_like(&t->f);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_vfio_dev_reset(d, &t->err), 0);
	assert_int_equal(fake_vfio_nth(&t->f, VFIO_DEVICE_RESET, 0)->fd, brk_vfio_dev_fd(d));
	t->f.reset_err = -EIO;
	assert_int_equal(brk_vfio_dev_reset(d, &t->err), -EIO);
	assert_int_equal(brk_vfio_dev_resets(d), 1);
	brk_vfio_dev_free(d);
}

static void test_device_pb_fill_matches_device(void **state)
{
	struct t *t = *state;
	struct brk_vfio_dev_pb pb;
	struct brk_vfio_dev *d;
	size_t i;

	edu_like(&t->f);
	open_attached(t);
	assert_int_equal(brk_vfio_dev_open(t->g, BDF, &t->err, &d), 0);
	assert_int_equal(brk_vfio_dev_pb_fill(d, &pb), 0);
	assert_int_equal(pb.n_regions, 3); /* BAR0, BAR2, config */
	assert_int_equal(pb.regions[0]->index, 0);
	assert_int_equal(pb.regions[0]->n_mmap_areas, 0);
	assert_int_equal(pb.regions[1]->index, 2);
	assert_true(pb.regions[1]->msix_mappable);
	assert_int_equal(pb.regions[1]->n_mmap_areas, 2);
	assert_int_equal(pb.regions[1]->mmap_areas[1]->offset, 0x4000);
	assert_int_equal(pb.regions[1]->mmap_areas[1]->size, 0xc000);
	assert_int_equal(pb.regions[1]->offset, 2ull << 40);
	assert_int_equal(pb.regions[2]->index, VFIO_PCI_CONFIG_REGION_INDEX);
	assert_int_equal(pb.n_irqs, VFIO_PCI_NUM_IRQS);
	for (i = 0; i < pb.n_irqs; i++) {
		assert_int_equal(pb.irqs[i]->index, i);
		assert_int_equal(pb.irqs[i]->count, brk_vfio_dev_irq(d, (uint32_t)i)->count);
	}
	/* The lists pack as a valid message. */
	{
		Vb__Region *r = pb.regions[1];
		size_t len = vb__region__get_packed_size(r);
		uint8_t *buf = malloc(len);
		Vb__Region *back;

		assert_int_equal(vb__region__pack(r, buf), len);
		back = vb__region__unpack(NULL, len, buf);
		assert_non_null(back);
		assert_int_equal(back->n_mmap_areas, 2);
		vb__region__free_unpacked(back, NULL);
		free(buf);
	}
	brk_vfio_dev_pb_release(&pb);
	assert_null(pb.regions);
	brk_vfio_dev_free(d);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_container_new_api_mismatch_rejected),
	    T(test_container_new_without_type1_rejected),
	    T(test_container_new_missing_node_explained),
	    T(test_container_iommufd_absence_reported),
	    T(test_group_attach_first_selects_type1v2),
	    T(test_container_dma_avail_requeried),
	    T(test_container_iova_ranges_reach_dma_cfg),
	    T(test_container_iova_range_backwards_ignored),
	    T(test_group_attach_falls_back_to_type1),
	    T(test_group_attach_to_second_container_rejected),
	    T(test_group_not_viable_lists_unbound_devices),
	    T(test_group_open_held_by_other_vm_names_it),
	    T(test_group_open_busy_elsewhere_says_other_process),
	    T(test_device_open_unbound_member_says_bind),
	    T(test_device_grant_opens_own_file_and_records_holder),
	    T(test_device_stop_decoding_clears_command_bits),
	    T(test_group_check_released_names_holder),
	    T(test_group_detach_kernel_busy_counts_held),
	    T(test_group_detach_last_resets_type),
	    T(test_group_detach_with_open_device_busy),
	    T(test_device_open_reads_regions_and_caps),
	    T(test_device_open_capability_loop_rejected),
	    T(test_device_open_sparse_area_outside_region_rejected),
	    T(test_device_open_too_many_regions_rejected),
	    T(test_device_open_bad_bdf_or_unattached_rejected),
	    T(test_device_reset_needs_flag),
	    T(test_device_reset_issued_and_counted),
	    T(test_device_pb_fill_matches_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
