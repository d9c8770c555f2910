/*
 * test_registry: the broker's VM/device table and the device lifecycle's normal path (every
 * transition, allowed or not, is test_daemon's).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "registry.h"

static void test_registry_add_same_bdf_twice_refused(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *a, *b = NULL;
	bool created;

	assert_int_equal(brk_registry_new(4, 4, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm1", &a, &created), 0);
	assert_true(created);
	assert_int_equal(a->state, BRK_DEV_STARTING);
	/* Also from another VM: a device belongs to one VM at a time. */
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm2", &b, NULL), -EEXIST);
	assert_null(b);
	assert_int_equal(brk_registry_ndevices(r), 1);
	assert_int_equal(brk_registry_nvms(r), 1);
	assert_null(brk_registry_find_vm(r, "vm2"));
	brk_registry_free(r);
}

static void test_registry_devices_of_one_vm_share_it(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *a, *b;
	bool created = true;
	struct brk_vm *vm;

	assert_int_equal(brk_registry_new(4, 4, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm1", &a, NULL), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:04.0", "vm1", &b, &created), 0);
	assert_false(created);
	assert_ptr_equal(a->vm, b->vm);
	assert_int_equal(a->vm->ndevices, 2);
	assert_int_not_equal(a->id, b->id);
	/* The VM outlives its first device and cannot be dropped while it has one. */
	brk_registry_remove(r, a);
	assert_null(brk_registry_find(r, "0000:00:03.0"));
	assert_int_equal(b->vm->ndevices, 1);
	assert_int_equal(brk_registry_drop_vm(r, b->vm), -EBUSY);
	vm = b->vm;
	brk_registry_remove(r, b);
	assert_int_equal(brk_registry_drop_vm(r, vm), 0);
	assert_int_equal(brk_registry_nvms(r), 0);
	assert_null(brk_registry_first(r));
	/* The tail pointers survived the removals: adding again works and is found. */
	assert_int_equal(brk_registry_add(r, "0000:00:05.0", "vm3", &a, &created), 0);
	assert_true(created);
	assert_ptr_equal(brk_registry_first(r), a);
	assert_ptr_equal(brk_registry_first_vm(r), a->vm);
	brk_registry_free(r);
}

static void test_registry_limits_full_refused(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;

	assert_int_equal(brk_registry_new(1, 2, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm1", &d, NULL), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:04.0", "vm2", &d, NULL), -ENOSPC);
	assert_int_equal(brk_registry_add(r, "0000:00:04.0", "vm1", &d, NULL), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:05.0", "vm1", &d, NULL), -ENOSPC);
	assert_int_equal(brk_registry_ndevices(r), 2);
	brk_registry_free(r);
	r = NULL;
	assert_int_equal(brk_registry_new(0, 1, &r), -EINVAL);
	assert_null(r);
}

static void test_registry_bad_names_refused(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;
	char longname[BRK_VM_NAME_MAX + 2];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(brk_registry_new(4, 4, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "-vm", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm/../x", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm\n1", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", longname, &d, NULL), -EINVAL);
	longname[BRK_VM_NAME_MAX] = '\0';
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", longname, &d, NULL), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:0A.0", "vm", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "00:04.0", "vm", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_add(r, "0000:00:04.0/", "vm", &d, NULL), -EINVAL);
	assert_int_equal(brk_registry_ndevices(r), 1);
	brk_registry_free(r);
}

static void test_registry_lifecycle_normal_path_allowed(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;

	assert_int_equal(brk_registry_new(4, 4, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm1", &d, NULL), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_READY), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_CONNECTED), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_READY), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_FAILING), 0);
	/* The broker's own states are FAULTED on the wire. */
	assert_int_equal(brk_dev_state_wire(d->state), BRK_DEV_FAULTED);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_STARTING), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_READY), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_REMOVING), 0);
	assert_string_equal(brk_dev_state_name(d->state), "removing");
	assert_int_equal(brk_dev_state_wire(d->state), BRK_DEV_REMOVING);
	brk_registry_free(r);
}

static void test_registry_fault_message_kept(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;
	char big[BRK_FAULT_MAX * 2];

	assert_int_equal(brk_registry_new(4, 4, &r), 0);
	assert_int_equal(brk_registry_add(r, "0000:00:03.0", "vm1", &d, NULL), 0);
	brk_dev_set_fault(d, "worker %d killed by signal %d", 42, 9);
	assert_string_equal(d->last_fault, "worker 42 killed by signal 9");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	brk_dev_set_fault(d, "%s", big);
	assert_int_equal(strlen(d->last_fault), BRK_FAULT_MAX - 1);
	brk_registry_free(r);
}

/* ListDevices' pages: every device after a cursor, in BDF order whatever the order of adding,
 * the cursor itself never assigned; duplicates of a sort key cannot exist (one record a BDF).
 * The order holds as devices are removed and added again, and lookups by BDF find each. */
static void test_registry_after_cursor_in_bdf_order(void **state)
{
	static const char *const added[] = {"0000:3b:00.1", "0000:00:1f.3", "0001:00:00.0",
					    "0000:3b:00.0", "0000:0a:00.0", "0000:00:02.0"};
	static const char *const sorted[] = {"0000:00:02.0", "0000:00:1f.3", "0000:0a:00.0",
					     "0000:3b:00.0", "0000:3b:00.1", "0001:00:00.0"};
	struct brk_dev_rec *const *out, *d;
	struct brk_registry *r;

	assert_int_equal(brk_registry_new(4, 8, &r), 0);
	assert_int_equal(brk_registry_after(r, "", &out), 0);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(brk_registry_add(r, added[i], "vm", &d, NULL), 0);
	assert_int_equal(brk_registry_after(r, "", &out), 6);
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(out[i]->bdf, sorted[i]);
		assert_ptr_equal(brk_registry_find(r, sorted[i]), out[i]);
	}
	/* 0000:0b:00.0 is not assigned: the devices after where it would be. */
	assert_int_equal(brk_registry_after(r, "0000:0b:00.0", &out), 3);
	assert_string_equal(out[0]->bdf, "0000:3b:00.0");
	assert_string_equal(out[2]->bdf, "0001:00:00.0");
	/* An assigned cursor: the devices after it, not it. */
	assert_int_equal(brk_registry_after(r, "0000:3b:00.0", &out), 2);
	assert_string_equal(out[0]->bdf, "0000:3b:00.1");
	assert_int_equal(brk_registry_after(r, "0001:00:00.0", &out), 0);
	assert_null(brk_registry_find(r, "0000:0b:00.0"));
	/* The first, a middle and the last go; one comes back: still in order. */
	brk_registry_remove(r, brk_registry_find(r, "0000:00:02.0"));
	brk_registry_remove(r, brk_registry_find(r, "0000:3b:00.0"));
	brk_registry_remove(r, brk_registry_find(r, "0001:00:00.0"));
	assert_null(brk_registry_find(r, "0000:3b:00.0"));
	assert_int_equal(brk_registry_add(r, "0000:3b:00.0", "vm", &d, NULL), 0);
	assert_int_equal(brk_registry_after(r, "", &out), 4);
	assert_string_equal(out[0]->bdf, "0000:00:1f.3");
	assert_string_equal(out[1]->bdf, "0000:0a:00.0");
	assert_string_equal(out[2]->bdf, "0000:3b:00.0");
	assert_ptr_equal(out[2], d);
	assert_string_equal(out[3]->bdf, "0000:3b:00.1");
	/* brk_registry_first() still gives the order of adding. */
	assert_string_equal(brk_registry_first(r)->bdf, "0000:3b:00.1");
	brk_registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_registry_after_cursor_in_bdf_order),
	    cmocka_unit_test(test_registry_add_same_bdf_twice_refused),
	    cmocka_unit_test(test_registry_devices_of_one_vm_share_it),
	    cmocka_unit_test(test_registry_limits_full_refused),
	    cmocka_unit_test(test_registry_bad_names_refused),
	    cmocka_unit_test(test_registry_lifecycle_normal_path_allowed),
	    cmocka_unit_test(test_registry_fault_message_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
