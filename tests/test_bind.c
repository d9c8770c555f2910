/*
 * test_bind: broker/bind.c: the sysfs reads and writes (IOMMU group, driver, rebinding to
 * vfio-pci, group members) against a fake sysfs tree. BDF parsing is test_base's.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bind.h"
#include "sysfs_tree.h"

struct t {
	char root[PATH_MAX];
	struct brk_sys sys;
	struct vb_err err;
};

static int setup(void **state)
{
	static struct t t;

	memset(&t, 0, sizeof(t));
	tree_new(t.root, sizeof(t.root));
	t.sys = brk_sys_real;
	t.sys.root = t.root;
	*state = &t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	tree_free(t->root);
	return 0;
}

static void test_bind_iommu_group_reads_link(void **state)
{
	struct t *t = *state;
	uint32_t g = 0;

	tree_pci_device(t->root, "0000:00:03.0", "vfio-pci", 12);
	tree_pci_device(t->root, "0000:00:04.0", NULL, -1);
	assert_int_equal(brk_bind_iommu_group(&t->sys, "0000:00:03.0", &g, &t->err), 0);
	assert_int_equal(g, 12);
	assert_int_equal(brk_bind_iommu_group(&t->sys, "0000:00:04.0", &g, &t->err), -ENODEV);
	assert_non_null(strstr(t->err.msg, "intel_iommu=on"));
	assert_int_equal(brk_bind_iommu_group(&t->sys, "0000:00:05.0", &g, &t->err), -ENOENT);
	assert_int_equal(brk_bind_iommu_group(&t->sys, "../../../../tmp", &g, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "invalid PCI address"));
	assert_int_equal(g, 12);
}

static void test_bind_driver_reports_name_or_empty(void **state)
{
	struct t *t = *state;
	char drv[32];

	tree_pci_device(t->root, "0000:00:03.0", "e1000e", 3);
	tree_pci_device(t->root, "0000:00:04.0", NULL, 4);
	assert_int_equal(brk_bind_driver(&t->sys, "0000:00:03.0", drv, sizeof(drv)), 0);
	assert_string_equal(drv, "e1000e");
	assert_int_equal(brk_bind_driver(&t->sys, "0000:00:04.0", drv, sizeof(drv)), 0);
	assert_string_equal(drv, "");
	assert_int_equal(brk_bind_driver(&t->sys, "0000:00:03.0", drv, 3), -ENAMETOOLONG);
	assert_int_equal(brk_bind_driver(&t->sys, "0000:00:09.0", drv, sizeof(drv)), -ENOENT);
}

static void test_bind_vfio_already_bound_writes_nothing(void **state)
{
	struct t *t = *state;
	char buf[64];

	tree_pci_device(t->root, "0000:00:03.0", "vfio-pci", 3);
	assert_int_equal(brk_bind_vfio(&t->sys, "0000:00:03.0", &t->err), 0);
	tree_read(t->root, "sys/devices/pci0000:00/0000:00:03.0/driver_override", buf, sizeof(buf));
	assert_string_equal(buf, "");
	tree_read(t->root, "sys/bus/pci/drivers/vfio-pci/unbind", buf, sizeof(buf));
	assert_string_equal(buf, "");
}

/* The fake sysfs does not rebind anything, so after the writes the device is still on e1000e:
 * the call must notice and say so, having written override, unbind and probe, and then undo the
 * override (a newline clears it) and probe again so that the old driver gets its device back. */
static void test_bind_vfio_not_claimed_undoes_override_and_reprobes(void **state)
{
	struct t *t = *state;
	char buf[64];

	tree_pci_device(t->root, "0000:00:03.0", "e1000e", 3);
	assert_int_equal(brk_bind_vfio(&t->sys, "0000:00:03.0", &t->err), -EIO);
	assert_non_null(strstr(t->err.msg, "on driver \"e1000e\""));
	assert_non_null(strstr(t->err.msg, "vfio-pci module loaded"));
	assert_non_null(strstr(t->err.msg, "driver_override cleared, device probed again"));
	/* sysfs takes the newline as the whole value (cleared); the fake's regular file keeps
	 * the old tail after it. */
	tree_read(t->root, "sys/devices/pci0000:00/0000:00:03.0/driver_override", buf, sizeof(buf));
	assert_string_equal(buf, "\nfio-pci");
	tree_read(t->root, "sys/bus/pci/drivers/e1000e/unbind", buf, sizeof(buf));
	assert_string_equal(buf, "0000:00:03.0");
	tree_read(t->root, "sys/bus/pci/drivers_probe", buf, sizeof(buf));
	assert_string_equal(buf, "0000:00:03.0");
}

/* The unbind refused: the device is still on its driver, so only the override is undone and
 * nothing is probed. */
static void test_bind_vfio_unbind_refused_undoes_override_only(void **state)
{
	struct t *t = *state;
	char buf[64], path[4200];

	tree_pci_device(t->root, "0000:00:03.0", "e1000e", 3);
	snprintf(path, sizeof(path), "%s/sys/bus/pci/drivers/e1000e/unbind", t->root);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(brk_bind_vfio(&t->sys, "0000:00:03.0", &t->err), -EIO);
	assert_non_null(strstr(t->err.msg, "driver/unbind failed"));
	/* sysfs takes the newline as the whole value (cleared); the fake's regular file keeps
	 * the old tail after it. */
	tree_read(t->root, "sys/devices/pci0000:00/0000:00:03.0/driver_override", buf, sizeof(buf));
	assert_string_equal(buf, "\nfio-pci");
	tree_read(t->root, "sys/bus/pci/drivers_probe", buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void test_bind_vfio_bad_bdf_touches_nothing(void **state)
{
	struct t *t = *state;
	char buf[64];

	tree_pci_device(t->root, "0000:00:03.0", "e1000e", 3);
	assert_int_equal(brk_bind_vfio(&t->sys, "0000:00:03.0/../0000:00:03.0", &t->err), -EINVAL);
	assert_int_equal(brk_bind_vfio(&t->sys, "0000:00:07.0", &t->err), -ENOENT);
	tree_read(t->root, "sys/bus/pci/drivers_probe", buf, sizeof(buf));
	assert_string_equal(buf, "");
}

struct seen {
	char list[256];
};

static int collect(const char *bdf, const char *driver, void *ctx)
{
	struct seen *s = ctx;
	size_t n = strlen(s->list);

	snprintf(s->list + n, sizeof(s->list) - n, "%s=%s;", bdf, driver);
	return 0;
}

static void test_bind_group_devices_lists_members_and_drivers(void **state)
{
	struct t *t = *state;
	struct seen s = {{0}};

	tree_pci_device(t->root, "0000:00:03.0", "vfio-pci", 7);
	tree_pci_device(t->root, "0000:00:03.1", "e1000e", 7);
	tree_pci_device(t->root, "0000:00:04.0", "e1000e", 8);
	tree_file(t->root, "sys/kernel/iommu_groups/7/devices/not-a-bdf", "");
	assert_int_equal(brk_bind_group_devices(&t->sys, 7, collect, &s), 0);
	assert_non_null(strstr(s.list, "0000:00:03.0=vfio-pci;"));
	assert_non_null(strstr(s.list, "0000:00:03.1=e1000e;"));
	assert_null(strstr(s.list, "0000:00:04.0"));
	assert_null(strstr(s.list, "not-a-bdf"));
	assert_int_equal(brk_bind_group_devices(&t->sys, 99, collect, &s), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bind_iommu_group_reads_link, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_driver_reports_name_or_empty, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bind_vfio_already_bound_writes_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bind_vfio_not_claimed_undoes_override_and_reprobes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_vfio_unbind_refused_undoes_override_only,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_vfio_bad_bdf_touches_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bind_group_devices_lists_members_and_drivers,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
