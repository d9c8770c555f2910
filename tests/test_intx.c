/*
 * Tests of the pass-through interrupt indexes of the worker core (worker/irq.c): INTx with its
 * trigger and resample (unmask) eventfds, and the ERR and REQ indexes. Unlike MSI and MSI-X
 * there is nothing to emulate: the VMM's eventfds go to the kernel as they are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "wkr_test_util.h"

static int setup(void **state)
{
	struct tdev *t = calloc(1, sizeof(*t));

	if (!t || tdev_open_fixture(t, "pcie_spec_sriov_ari_rebar.img") < 0)
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

static void test_intx_trigger_and_resample_routed_directly(void **state)
{
	struct tdev *t = *state;
	int trig = new_efd(), res = new_efd();

	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, res), 0);
	assert_int_equal(t->rec.nsets, 2);
	assert_int_equal(t->rec.sets[0].s.action, VFIO_IRQ_SET_ACTION_TRIGGER);
	assert_int_equal(t->rec.sets[0].s.count, 1);
	assert_true(same_efd(t->rec.sets[0].fds[0], trig));
	assert_int_equal(t->rec.sets[1].s.action, VFIO_IRQ_SET_ACTION_UNMASK);
	assert_true(same_efd(t->rec.sets[1].fds[0], res));
	/* Without a resample fd: the trigger only. */
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, -1), 0);
	assert_int_equal(t->rec.nsets, 4); /* the old route torn down, the new trigger set */
	assert_true(t->rec.sets[2].s.disable);
	assert_int_equal(t->rec.sets[3].s.action, VFIO_IRQ_SET_ACTION_TRIGGER);
	close(trig);
	close(res);
}

static void test_intx_count_zero_disables(void **state)
{
	struct tdev *t = *state;
	int trig = new_efd();

	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, -1), 0);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, -1), 0);
	assert_int_equal(t->rec.nsets, 2);
	assert_true(t->rec.sets[1].s.disable);
	assert_int_equal(t->rec.sets[1].s.index, VFIO_PCI_INTX_IRQ_INDEX);
	/* Nothing routed any more: a second removal asks the broker for nothing. */
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, -1), 0);
	assert_int_equal(t->rec.nsets, 2);
	close(trig);
}

static void test_intx_bad_requests_rejected(void **state)
{
	struct tdev *t = *state;
	int fds[2] = {new_efd(), new_efd()};
	struct tdev n;

	/* Two triggers for one line, a start past it, a resample fd on MSI. */
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 2, fds, -1), -EINVAL);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 1, 1, fds, -1), -EINVAL);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, fds, fds[1]),
			 -EINVAL);
	assert_int_equal(wkr_irq_set_fds(t->dev, WKR_NUM_IRQS, 0, 1, fds, -1), -EINVAL);
	assert_int_equal(t->rec.nsets, 0);
	/* A device without INTx. */
	assert_int_equal(tdev_open_fixture(&n, "nvme.img"), 0);
	assert_int_equal(wkr_irq_set_fds(n.dev, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, fds, -1), -ENOENT);
	tdev_close(&n);
	close(fds[0]);
	close(fds[1]);
}

static void test_intx_err_and_req_pass_through(void **state)
{
	struct tdev *t = *state;
	int err = new_efd(), req = new_efd();

	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, &err, -1), 0);
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &req, -1), 0);
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_ERR_IRQ_INDEX, 0), err));
	assert_true(same_efd(routed_fd(&t->rec, VFIO_PCI_REQ_IRQ_INDEX, 0), req));
	/* The VMM goes away: both torn down. */
	assert_int_equal(wkr_irq_release(t->dev), 0);
	assert_int_equal(routed_fd(&t->rec, VFIO_PCI_ERR_IRQ_INDEX, 0), -1);
	assert_int_equal(routed_fd(&t->rec, VFIO_PCI_REQ_IRQ_INDEX, 0), -1);
	close(err);
	close(req);
}

static void test_intx_broker_failure_reported(void **state)
{
	struct tdev *t = *state;
	int trig = new_efd();

	t->rec.fail_next = -EPERM;
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, -1), -EPERM);
	assert_int_equal(t->rec.nsets, 0);
	/* Nothing is believed routed: a retry asks again. */
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, -1), 0);
	assert_int_equal(t->rec.nsets, 1);
	close(trig);
}

/* A routing whose SET_IRQS the owner failed (a broker that restarted meanwhile) is sent again
 * as the worker intends it: off first, whatever the kernel holds, then the trigger and the
 * resample fd; once the VMM has gone, only the off. */
static void test_intx_resync_sends_intended_routing(void **state)
{
	struct tdev *t = *state;
	int trig = new_efd(), res = new_efd();

	t->rec.fail_next = -ETIMEDOUT;
	assert_int_equal(wkr_irq_set_fds(t->dev, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &trig, res),
			 -ETIMEDOUT);
	assert_int_equal(t->rec.nsets, 0);
	assert_int_equal(wkr_irq_resync(t->dev, VFIO_PCI_INTX_IRQ_INDEX), 0);
	assert_int_equal(t->rec.nsets, 3);
	assert_true(t->rec.sets[0].s.disable);
	assert_int_equal(t->rec.sets[1].s.action, VFIO_IRQ_SET_ACTION_TRIGGER);
	assert_true(same_efd(t->rec.sets[1].fds[0], trig));
	assert_int_equal(t->rec.sets[2].s.action, VFIO_IRQ_SET_ACTION_UNMASK);
	assert_true(same_efd(t->rec.sets[2].fds[0], res));
	assert_int_equal(wkr_irq_release(t->dev), 0);
	assert_int_equal(t->rec.nsets, 4);
	assert_int_equal(wkr_irq_resync(t->dev, VFIO_PCI_INTX_IRQ_INDEX), 0);
	assert_int_equal(t->rec.nsets, 5);
	assert_true(t->rec.sets[4].s.disable);
	assert_int_equal(wkr_irq_resync(t->dev, WKR_NUM_IRQS), -EINVAL);
	close(trig);
	close(res);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_intx_trigger_and_resample_routed_directly),
	    T(test_intx_count_zero_disables),
	    T(test_intx_bad_requests_rejected),
	    T(test_intx_err_and_req_pass_through),
	    T(test_intx_broker_failure_reported),
	    T(test_intx_resync_sends_intended_routing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
