/*
 * test_irq: brk_irq_set (broker/irq.c) against the fake VFIO kernel: range, overflow and shape
 * checks, eventfd checks, NORESIZE and the INTx/MSI/MSI-X exclusion, and that nothing reaches
 * the kernel or the record when a request is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_vfio.h"
#include "fdkind.h"
#include "irq.h"
#include "irq_pb.h"
#include "record.h"

#define TRIGGER VFIO_IRQ_SET_ACTION_TRIGGER
#define MASK	VFIO_IRQ_SET_ACTION_MASK
#define UNMASK	VFIO_IRQ_SET_ACTION_UNMASK
#define NONE	VFIO_IRQ_SET_DATA_NONE
#define BOOL	VFIO_IRQ_SET_DATA_BOOL
#define EVFD	VFIO_IRQ_SET_DATA_EVENTFD

#define INTX VFIO_PCI_INTX_IRQ_INDEX
#define MSI  VFIO_PCI_MSI_IRQ_INDEX
#define MSIX VFIO_PCI_MSIX_IRQ_INDEX
#define ERR  VFIO_PCI_ERR_IRQ_INDEX
#define REQ  VFIO_PCI_REQ_IRQ_INDEX

struct t {
	struct fake_vfio f;
	struct brk_irqs *irqs;
	int devfd;
	int efd[8];
	struct vb_err err;
};

/* An edu-like device: INTx (maskable, automasked), MSI with 1 vector, MSI-X with 5 (both
 * NORESIZE, as on 6.1), no ERR, REQ with 1. */
static struct t *t_new(void)
{
	static const struct brk_irq_info infos[] = {
	    {INTX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1},
	    {MSI, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1},
	    {MSIX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 5},
	    {ERR, 0, 0},
	    {REQ, VFIO_IRQ_INFO_EVENTFD, 1},
	};
	struct t *t = calloc(1, sizeof(*t));
	int i;

	assert_non_null(t);
	fake_vfio_init(&t->f);
	t->devfd = eventfd(0, EFD_CLOEXEC);
	for (i = 0; i < 8; i++) {
		t->efd[i] = eventfd(0, EFD_CLOEXEC);
		assert_true(t->efd[i] >= 0);
	}
	assert_int_equal(brk_irqs_new(&t->f.sys, t->devfd, true, infos, 5, &t->irqs), 0);
	return t;
}

static void t_free(struct t *t)
{
	int i;

	brk_irqs_free(t->irqs);
	for (i = 0; i < 8; i++)
		close(t->efd[i]);
	close(t->devfd);
	free(t);
}

static int set_fds(struct t *t, uint32_t index, uint32_t start, uint32_t count, const int *fds,
		   uint32_t nfds)
{
	struct brk_irq_req q = {.index = index,
				.start = start,
				.count = count,
				.action = TRIGGER,
				.data = EVFD,
				.fds = fds,
				.nfds = nfds};

	return brk_irq_set(t->irqs, &q, &t->err);
}

static struct brk_irq_status status(const struct t *t, uint32_t index)
{
	struct brk_irq_status s;

	assert_int_equal(brk_irq_status(t->irqs, index, &s), 0);
	return s;
}

/* Refused with `want`, message containing `msg`, no ioctl, record of `index` unchanged. */
static void assert_refused(struct t *t, int r, int want, const char *msg, uint32_t index,
			   struct brk_irq_status before, unsigned calls_before)
{
	struct brk_irq_status after = status(t, index);

	assert_int_equal(r, want);
	assert_int_equal(t->err.code, want);
	if (!strstr(t->err.msg, msg))
		fail_msg("message \"%s\" lacks \"%s\"", t->err.msg, msg);
	assert_int_equal(t->f.ncalls, calls_before);
	assert_int_equal(after.enabled, before.enabled);
	assert_int_equal(after.triggers, before.triggers);
	assert_int_equal(after.unmask_fd, before.unmask_fd);
}

#define REFUSE(t, index, call, want, msg)                        \
	do {                                                     \
		struct brk_irq_status b_ = status(t, index);     \
		unsigned c_ = (t)->f.ncalls;                     \
		int r_ = (call);                                 \
		assert_refused(t, r_, want, msg, index, b_, c_); \
	} while (0)

static void test_irq_set_index_out_of_range_rejected(void **state)
{
	struct t *t = t_new();
	struct brk_irq_req q = {
	    .index = 5, .count = 1, .action = TRIGGER, .data = EVFD, .fds = t->efd, .nfds = 1};

	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "does not exist"));
	q.index = UINT32_MAX;
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), -EINVAL);
	/* ERR exists as an index but the device has no vector there. */
	REFUSE(t, ERR, set_fds(t, ERR, 0, 1, t->efd, 1), -EINVAL, "does not exist");
	assert_int_equal(t->f.ncalls, 0);
	t_free(t);
}

static void test_irq_set_start_out_of_range_rejected(void **state)
{
	struct t *t = t_new();

	REFUSE(t, MSIX, set_fds(t, MSIX, 5, 1, t->efd, 1), -EINVAL, "out of range");
	REFUSE(t, MSIX, set_fds(t, MSIX, 4, 2, t->efd, 2), -EINVAL, "out of range");
	REFUSE(t, INTX, set_fds(t, INTX, 1, 1, t->efd, 1), -EINVAL, "out of range");
	t_free(t);
}

static void test_irq_set_count_overflow_rejected(void **state)
{
	struct t *t = t_new();

	/* start + count wraps to 0 in 32 bits. */
	REFUSE(t, MSIX, set_fds(t, MSIX, 1, UINT32_MAX, t->efd, UINT32_MAX), -EINVAL,
	       "out of range");
	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 6, t->efd, 6), -EINVAL, "out of range");
	t_free(t);
}

static void test_irq_set_fd_count_mismatch_rejected(void **state)
{
	struct t *t = t_new();

	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 3, t->efd, 2), -EINVAL, "2 eventfd slots for 3");
	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 3, NULL, 3), -EINVAL, "eventfd slots");
	t_free(t);
}

static void test_irq_set_non_eventfd_rejected(void **state)
{
	struct t *t = t_new();
	int p[2], fds[3];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fds[0] = t->efd[0];
	fds[1] = p[0];
	fds[2] = t->efd[1];
	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 3, fds, 3), -EACCES, "slot 1");
	fds[1] = t->devfd; /* an eventfd: the fake's device fd; then a closed one */
	close(p[0]);
	fds[2] = p[0];
	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 3, fds, 3), -EBADF, "slot 2");
	fds[2] = -7;
	REFUSE(t, MSIX, set_fds(t, MSIX, 0, 3, fds, 3), -EBADF, "slot 2");
	close(p[1]);
	t_free(t);
}

static void test_irq_set_minus_one_slots_accepted(void **state)
{
	struct t *t = t_new();
	int fds[5] = {t->efd[0], -1, t->efd[1], -1, t->efd[2]};
	const struct fake_call *c;

	assert_int_equal(set_fds(t, MSIX, 0, 5, fds, 5), 0);
	c = fake_vfio_nth(&t->f, VFIO_DEVICE_SET_IRQS, 0);
	assert_non_null(c);
	assert_int_equal(c->fd, t->devfd);
	assert_int_equal(c->flags, TRIGGER | EVFD);
	assert_int_equal(c->index, MSIX);
	assert_int_equal(c->count, 5);
	assert_memory_equal(c->fds, fds, sizeof(fds));
	assert_int_equal(status(t, MSIX).enabled, 5);
	assert_int_equal(status(t, MSIX).triggers, 3);
	/* Removing one trigger keeps the index enabled. */
	fds[0] = -1;
	assert_int_equal(set_fds(t, MSIX, 0, 1, fds, 1), 0);
	assert_int_equal(status(t, MSIX).enabled, 5);
	assert_int_equal(status(t, MSIX).triggers, 2);
	t_free(t);
}

static void test_irq_set_noresize_growth_rejected(void **state)
{
	struct t *t = t_new();

	assert_int_equal(set_fds(t, MSIX, 0, 2, t->efd, 2), 0);
	assert_int_equal(status(t, MSIX).enabled, 2);
	REFUSE(t, MSIX, set_fds(t, MSIX, 1, 2, t->efd, 2), -EINVAL, "NORESIZE");
	/* Within the enabled vectors is fine. */
	assert_int_equal(set_fds(t, MSIX, 1, 1, t->efd + 3, 1), 0);
	/* Disable, then enable with all five. */
	assert_int_equal(brk_irq_disable(t->irqs, MSIX, &t->err), 0);
	assert_int_equal(status(t, MSIX).enabled, 0);
	assert_int_equal(set_fds(t, MSIX, 0, 5, t->efd, 5), 0);
	assert_int_equal(status(t, MSIX).enabled, 5);
	t_free(t);
}

static void test_irq_set_msi_while_msix_enabled_busy(void **state)
{
	struct t *t = t_new();

	assert_int_equal(set_fds(t, MSIX, 0, 1, t->efd, 1), 0);
	REFUSE(t, MSI, set_fds(t, MSI, 0, 1, t->efd + 1, 1), -EBUSY, "MSI-X is enabled");
	REFUSE(t, INTX, set_fds(t, INTX, 0, 1, t->efd + 1, 1), -EBUSY, "MSI-X is enabled");
	/* REQ is not part of the exclusion. */
	assert_int_equal(set_fds(t, REQ, 0, 1, t->efd + 2, 1), 0);
	assert_int_equal(brk_irq_disable(t->irqs, MSIX, &t->err), 0);
	assert_int_equal(set_fds(t, MSI, 0, 1, t->efd + 1, 1), 0);
	t_free(t);
}

static void test_irq_mask_on_unmaskable_index_rejected(void **state)
{
	struct t *t = t_new();
	struct brk_irq_req q = {.index = MSIX, .count = 1, .action = MASK, .data = NONE};

	assert_int_equal(set_fds(t, MSIX, 0, 1, t->efd, 1), 0);
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "not maskable");
	t_free(t);
}

static void test_irq_mask_intx_needs_enabled_then_accepted(void **state)
{
	struct t *t = t_new();
	uint8_t yes = 1;
	struct brk_irq_req q = {.index = INTX, .count = 1, .action = MASK, .data = NONE};
	const struct fake_call *c;

	REFUSE(t, INTX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "not enabled");
	assert_int_equal(set_fds(t, INTX, 0, 1, t->efd, 1), 0);
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	q.action = UNMASK;
	q.data = BOOL;
	q.bools = &yes;
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	c = fake_vfio_nth(&t->f, VFIO_DEVICE_SET_IRQS, 2);
	assert_int_equal(c->flags, UNMASK | BOOL);
	assert_int_equal(c->bools[0], 1);
	q.bools = NULL;
	REFUSE(t, INTX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "BOOL data missing");
	q.data = NONE;
	q.count = 0;
	REFUSE(t, INTX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "0 vectors");
	t_free(t);
}

static void test_irq_unmask_eventfd_intx_accepted_msi_rejected(void **state)
{
	struct t *t = t_new();
	struct brk_irq_req q = {.index = INTX,
				.count = 1,
				.action = UNMASK,
				.data = EVFD,
				.fds = t->efd + 1,
				.nfds = 1};
	int none = -1;

	assert_int_equal(set_fds(t, INTX, 0, 1, t->efd, 1), 0);
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	assert_true(status(t, INTX).unmask_fd);
	q.fds = &none;
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	assert_false(status(t, INTX).unmask_fd);
	q.action = MASK;
	q.fds = t->efd + 1;
	REFUSE(t, INTX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "unmask eventfd");
	assert_int_equal(brk_irq_disable(t->irqs, INTX, &t->err), 0);
	q.index = MSI;
	q.action = UNMASK;
	assert_int_equal(set_fds(t, MSI, 0, 1, t->efd, 1), 0);
	REFUSE(t, MSI, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "not maskable");
	t_free(t);
}

static void test_irq_set_unknown_action_or_data_rejected(void **state)
{
	struct t *t = t_new();
	struct brk_irq_req q = {.index = MSIX,
				.count = 1,
				.action = TRIGGER | MASK,
				.data = EVFD,
				.fds = t->efd,
				.nfds = 1};

	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "action");
	q.action = 1u << 9;
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "action");
	q.action = TRIGGER;
	q.data = EVFD | BOOL;
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "data type");
	q.data = 0;
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "data type");
	/* A loopback trigger (DATA_NONE with a count) and BOOL triggers are not offered. */
	q.data = NONE;
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "loopback");
	q.data = BOOL;
	REFUSE(t, MSIX, brk_irq_set(t->irqs, &q, &t->err), -EINVAL, "BOOL");
	t_free(t);
}

static void test_irq_set_kernel_error_leaves_record(void **state)
{
	struct t *t = t_new();

	struct brk_irq_status before;

	assert_int_equal(set_fds(t, MSIX, 0, 2, t->efd, 2), 0);
	before = status(t, MSIX);
	t->f.set_irqs_err = -ENOSPC;
	assert_int_equal(set_fds(t, MSIX, 0, 2, (int[]){-1, -1}, 2), -ENOSPC);
	assert_non_null(strstr(t->err.msg, "VFIO_DEVICE_SET_IRQS on MSI-X"));
	assert_int_equal(fake_vfio_count(&t->f, VFIO_DEVICE_SET_IRQS), 2);
	assert_int_equal(status(t, MSIX).triggers, before.triggers);
	assert_int_equal(status(t, MSIX).enabled, before.enabled);
	assert_int_equal(before.triggers, 2);
	t_free(t);
}

static void test_irq_disable_all_clears_every_index(void **state)
{
	struct t *t = t_new();
	struct brk_irq_req q = {.index = INTX,
				.count = 1,
				.action = UNMASK,
				.data = EVFD,
				.fds = t->efd + 1,
				.nfds = 1};
	unsigned before;
	uint32_t i;

	assert_int_equal(set_fds(t, INTX, 0, 1, t->efd, 1), 0);
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	assert_int_equal(set_fds(t, REQ, 0, 1, t->efd + 2, 1), 0);
	before = fake_vfio_count(&t->f, VFIO_DEVICE_SET_IRQS);
	assert_int_equal(brk_irq_disable_all(t->irqs), 0);
	/* Exactly the two enabled indexes were disabled, with DATA_NONE count 0. */
	assert_int_equal(fake_vfio_count(&t->f, VFIO_DEVICE_SET_IRQS), before + 2);
	for (i = before; i < before + 2; i++) {
		const struct fake_call *c = fake_vfio_nth(&t->f, VFIO_DEVICE_SET_IRQS, i);

		assert_int_equal(c->flags, TRIGGER | NONE);
		assert_int_equal(c->count, 0);
		assert_true(c->index == INTX || c->index == REQ);
	}
	for (i = 0; i < brk_irq_count(t->irqs); i++) {
		assert_int_equal(status(t, i).enabled, 0);
		assert_int_equal(status(t, i).triggers, 0);
		assert_false(status(t, i).unmask_fd);
	}
	/* Nothing left: a second call issues nothing. */
	assert_int_equal(brk_irq_disable_all(t->irqs), 0);
	assert_int_equal(fake_vfio_count(&t->f, VFIO_DEVICE_SET_IRQS), before + 2);
	t_free(t);
}

static void test_irq_check_eventfd_classifies_fds(void **state)
{
	int e = eventfd(0, EFD_CLOEXEC), p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(vb_eventfd_check(e), 0);
	assert_int_equal(vb_eventfd_check(p[0]), -EACCES);
	assert_int_equal(vb_eventfd_check(-1), -EBADF);
	close(e);
	assert_int_equal(vb_eventfd_check(e), -EBADF);
	close(p[0]);
	close(p[1]);
}

static void test_irqs_new_bad_info_rejected(void **state)
{
	struct brk_irq_info big[1] = {{MSIX, VFIO_IRQ_INFO_EVENTFD, 4096}};
	struct brk_irq_info many[BRK_DEVICE_MAX_IRQS + 1];
	struct brk_irqs *s = (struct brk_irqs *)0x1;

	memset(many, 0, sizeof(many));
	assert_int_equal(brk_irqs_new(NULL, 3, true, big, 1, &s), -EINVAL);
	assert_int_equal(brk_irqs_new(NULL, 3, true, many, BRK_DEVICE_MAX_IRQS + 1, &s), -EINVAL);
	assert_ptr_equal(s, (struct brk_irqs *)0x1);
}

static void test_irq_req_from_pb_maps_slots_to_fds(void **state)
{
	struct t *t = t_new();
	int32_t slots[4] = {1, -1, 0, 1};
	int arrived[2] = {t->efd[4], t->efd[5]}, vec[4];
	Vb__Brk__SetIrqs m = VB__BRK__SET_IRQS__INIT;
	struct brk_irq_req q;
	const struct fake_call *c;

	m.index = MSIX;
	m.count = 4;
	m.action = TRIGGER;
	m.n_fd_slots = 4;
	m.fd_slots = slots;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 4, &q, &t->err), 0);
	assert_int_equal(q.data, EVFD);
	assert_int_equal(q.nfds, 4);
	assert_ptr_equal(q.fds, vec);
	assert_int_equal(vec[0], t->efd[5]);
	assert_int_equal(vec[1], -1);
	assert_int_equal(vec[2], t->efd[4]);
	assert_int_equal(vec[3], t->efd[5]);
	/* And the result is a request brk_irq_set() carries out. */
	assert_int_equal(brk_irq_set(t->irqs, &q, &t->err), 0);
	c = fake_vfio_nth(&t->f, VFIO_DEVICE_SET_IRQS, 0);
	assert_memory_equal(c->fds, vec, sizeof(vec));
	assert_int_equal(status(t, MSIX).triggers, 3);
	t_free(t);
}

static void test_irq_req_from_pb_bad_slots_rejected(void **state)
{
	struct t *t = t_new();
	int32_t slots[2] = {0, 2};
	int arrived[2] = {t->efd[0], t->efd[1]}, vec[2] = {77, 77};
	Vb__Brk__SetIrqs m = VB__BRK__SET_IRQS__INIT;
	struct brk_irq_req q;

	m.index = MSIX;
	m.count = 2;
	m.action = TRIGGER;
	m.n_fd_slots = 2;
	m.fd_slots = slots;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 2, &q, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "but 2 fds arrived"));
	slots[1] = -2;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 2, &q, &t->err), -EINVAL);
	slots[1] = 1;
	m.count = 3;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 2, &q, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "2 eventfd slots for 3 vectors"));
	m.count = 2;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 1, &q, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "too many"));
	/* Nothing was written on the way. */
	assert_int_equal(vec[0], 77);
	assert_int_equal(vec[1], 77);
	m.disable = 1;
	assert_int_equal(brk_irq_req_from_pb(&m, arrived, 2, vec, 2, &q, &t->err), -EINVAL);
	assert_non_null(strstr(t->err.msg, "disable takes no vectors"));
	t_free(t);
}

static void test_irq_req_from_pb_disable_and_mask_shapes(void **state)
{
	struct t *t = t_new();
	Vb__Brk__SetIrqs m = VB__BRK__SET_IRQS__INIT;
	struct brk_irq_req q;

	m.index = INTX;
	m.disable = 1;
	assert_int_equal(brk_irq_req_from_pb(&m, NULL, 0, NULL, 0, &q, &t->err), 0);
	assert_int_equal(q.action, TRIGGER);
	assert_int_equal(q.data, NONE);
	assert_int_equal(q.count, 0);
	m.disable = 0;
	m.action = MASK;
	m.count = 1;
	assert_int_equal(brk_irq_req_from_pb(&m, NULL, 0, NULL, 0, &q, &t->err), 0);
	assert_int_equal(q.action, MASK);
	assert_int_equal(q.data, NONE);
	assert_int_equal(q.count, 1);
	assert_null(q.fds);
	t_free(t);
}

/* ---- the journal (state record hooks) ------------------------------------------------------ */

struct jlog {
	struct fake_vfio *f;
	int refuse;
	unsigned n;
	struct {
		char what; /* 'i' intent, '+' done ok, '-' done failed */
		uint32_t index, enabled;
		unsigned ioctls;
	} e[8];
};

static int jlog_intent(const struct brk_journal *j, struct brk_jop *op)
{
	struct jlog *l = j->ctx;

	if (l->refuse)
		return l->refuse;
	assert_int_equal(op->kind, BRK_JOP_IRQ_SET);
	l->e[l->n].what = 'i';
	l->e[l->n].index = op->index;
	l->e[l->n++].ioctls = fake_vfio_count(l->f, VFIO_DEVICE_SET_IRQS);
	return 0;
}

static void jlog_done(const struct brk_journal *j, const struct brk_jop *op, bool ok)
{
	struct jlog *l = j->ctx;

	l->e[l->n].what = ok ? '+' : '-';
	l->e[l->n].index = op->index;
	l->e[l->n].enabled = op->irq_enabled;
	l->e[l->n++].ioctls = fake_vfio_count(l->f, VFIO_DEVICE_SET_IRQS);
}

static void test_irq_journal_sees_intent_before_ioctl_and_state_after(void **state)
{
	struct t *t = t_new();
	struct jlog l = {.f = &t->f};
	struct brk_journal j = {.ctx = &l, .intent = jlog_intent, .done = jlog_done};
	int fds[3];

	(void)state;
	brk_irqs_set_journal(t->irqs, &j);
	fds[0] = t->efd[0];
	fds[1] = -1;
	fds[2] = t->efd[1];
	assert_int_equal(set_fds(t, MSIX, 0, 3, fds, 3), 0);
	assert_int_equal(l.n, 2);
	assert_true(l.e[0].what == 'i' && l.e[0].index == MSIX && l.e[0].ioctls == 0);
	assert_true(l.e[1].what == '+' && l.e[1].enabled == 3 && l.e[1].ioctls == 1);
	t->f.set_irqs_err = -EIO;
	assert_int_equal(set_fds(t, MSIX, 1, 1, fds, 1), -EIO);
	assert_true(l.e[2].what == 'i' && l.e[3].what == '-' && l.e[3].enabled == 3);
	t->f.set_irqs_err = 0;
	/* A journal that cannot write: refused with its error, no ioctl. */
	l.refuse = -ENOSPC;
	REFUSE(t, MSIX, set_fds(t, MSIX, 1, 1, fds, 1), -ENOSPC,
	       "state record could not be written");
	brk_irqs_set_journal(t->irqs, NULL);
	assert_int_equal(brk_irq_disable(t->irqs, MSIX, &t->err), 0); /* no journal: no call */
	assert_int_equal(l.n, 4);
	t_free(t);
}

/* SET_IRQS journaled into a real state record, then the index rebuilt from the loaded record
 * with no ioctl: the same status, and NORESIZE and the exclusion still apply. */
static void test_irq_restore_from_record_rebuilds_identical_state(void **state)
{
	struct brk_rec_vm vm = {.name = "vm1"};
	struct brk_rec_dev dev = {.bdf = "0000:00:03.0", .vm = "vm1", .state = 3};
	struct t *t = t_new(), *u = t_new();
	struct brk_record *rec = NULL;
	struct brk_rec_state *st = NULL;
	const struct brk_rec_dev *d;
	struct brk_journal j;
	struct vb_err err = {0};
	struct brk_irq_status a, b;
	int fds[4];
	uint32_t i;

	(void)state;
	assert_int_equal(brk_record_new(&rec, &err), 0);
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dev_put(rec, &dev), 0);
	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &j), 0);
	brk_irqs_set_journal(t->irqs, &j);
	fds[0] = t->efd[0];
	fds[1] = -1;
	fds[2] = t->efd[1];
	fds[3] = t->efd[2];
	assert_int_equal(set_fds(t, MSIX, 0, 4, fds, 4), 0);
	fds[0] = -1;
	assert_int_equal(set_fds(t, MSIX, 0, 1, fds, 1), 0);

	assert_int_equal(brk_record_load(brk_record_fd(rec), &st, &err), 0);
	d = brk_rec_state_dev(st, "0000:00:03.0");
	assert_non_null(d);
	for (i = 0; i < BRK_REC_MAX_IRQS; i++) {
		const struct brk_rec_irq *x = d->irq[i];

		if (!x || !x->count)
			continue;
		if (brk_irqs_restore(u->irqs, i, x->count, x->enabled, x->unmask_fd, x->trig, &err))
			fail_msg("restore %u: %s", i, err.msg);
	}
	assert_int_equal(u->f.ncalls, 0);
	for (i = 0; i < 5; i++) {
		a = status(t, i);
		b = status(u, i);
		assert_int_equal(a.enabled, b.enabled);
		assert_int_equal(a.triggers, b.triggers);
		assert_int_equal(a.unmask_fd, b.unmask_fd);
	}
	assert_int_equal(status(u, MSIX).enabled, 4);
	assert_int_equal(status(u, MSIX).triggers, 2);
	REFUSE(u, MSIX, set_fds(u, MSIX, 4, 1, fds, 1), -EINVAL, "NORESIZE");
	REFUSE(u, MSI, set_fds(u, MSI, 0, 1, &u->efd[0], 1), -EBUSY, "disable it");
	assert_int_equal(brk_irqs_restore(u->irqs, MSIX, 5, 4, false, d->irq[MSIX]->trig, &err),
			 -EBUSY);
	assert_int_equal(brk_irqs_restore(u->irqs, MSI, 2, 1, false, d->irq[MSIX]->trig, &err),
			 -EINVAL);
	brk_rec_state_free(st);
	brk_record_free(rec);
	t_free(t);
	t_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_irq_journal_sees_intent_before_ioctl_and_state_after),
	    cmocka_unit_test(test_irq_restore_from_record_rebuilds_identical_state),
	    cmocka_unit_test(test_irq_set_index_out_of_range_rejected),
	    cmocka_unit_test(test_irq_set_start_out_of_range_rejected),
	    cmocka_unit_test(test_irq_set_count_overflow_rejected),
	    cmocka_unit_test(test_irq_set_fd_count_mismatch_rejected),
	    cmocka_unit_test(test_irq_set_non_eventfd_rejected),
	    cmocka_unit_test(test_irq_set_minus_one_slots_accepted),
	    cmocka_unit_test(test_irq_set_noresize_growth_rejected),
	    cmocka_unit_test(test_irq_set_msi_while_msix_enabled_busy),
	    cmocka_unit_test(test_irq_mask_on_unmaskable_index_rejected),
	    cmocka_unit_test(test_irq_mask_intx_needs_enabled_then_accepted),
	    cmocka_unit_test(test_irq_unmask_eventfd_intx_accepted_msi_rejected),
	    cmocka_unit_test(test_irq_set_unknown_action_or_data_rejected),
	    cmocka_unit_test(test_irq_set_kernel_error_leaves_record),
	    cmocka_unit_test(test_irq_disable_all_clears_every_index),
	    cmocka_unit_test(test_irq_check_eventfd_classifies_fds),
	    cmocka_unit_test(test_irqs_new_bad_info_rejected),
	    cmocka_unit_test(test_irq_req_from_pb_maps_slots_to_fds),
	    cmocka_unit_test(test_irq_req_from_pb_bad_slots_rejected),
	    cmocka_unit_test(test_irq_req_from_pb_disable_and_mask_shapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
