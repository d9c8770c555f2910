/*
 * irq: VFIO_DEVICE_SET_IRQS for one device, validated, and the record of what is enabled.
 *
 * Trusts: the IRQ info it was built with (from the kernel) and the device fd. Trusts nothing in
 * a request: it comes from a worker. Checks mirror the kernel's own (vfio_set_irqs_validate_
 * and_prepare and vfio-pci's per-index handlers) so a bad request gets a precise message here
 * rather than a bare EINVAL from the kernel, and a few the kernel lacks (the fd type).
 *
 * The journal (brk_irqs_set_journal, journal.h) sees each SET_IRQS: an intent before the ioctl,
 * the index's new state after it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "base.h"
#include "fdkind.h"
#include "irq.h"

/* The PCI spec's most MSI-X vectors. */
#define IRQ_MAX_VECTORS 2048u

struct irq_index {
	struct brk_irq_info info;
	uint32_t enabled;  /* vectors the index is enabled with; 0: off */
	uint32_t triggers; /* bits set in trig */
	bool unmask_fd;
	uint8_t *trig; /* info.count entries: 1 when the vector has a trigger eventfd */
};

struct brk_irqs {
	const struct brk_sys *sys;
	int fd;
	bool pci;
	uint32_t n;
	struct irq_index *idx;
	struct brk_journal journal;
};

static const char *const index_names[] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};

static const char *index_name(bool pci, uint32_t index)
{
	if (pci && index < ARRAY_SIZE(index_names))
		return index_names[index];
	return "IRQ";
}

VB_DEFINE_CLEANUP(struct brk_irqs, brk_irqs_free);

int brk_irqs_new(const struct brk_sys *sys, int device_fd, bool pci,
		 const struct brk_irq_info *infos, uint32_t n, struct brk_irqs **ret)
{
	_cleanup_(brk_irqs_freep) struct brk_irqs *s = NULL;
	uint32_t i;

	if (n > BRK_DEVICE_MAX_IRQS)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (infos[i].count > IRQ_MAX_VECTORS)
			return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sys = sys ? sys : &brk_sys_real;
	s->fd = device_fd;
	s->pci = pci;
	s->idx = calloc(n ? n : 1, sizeof(*s->idx));
	if (!s->idx)
		return -ENOMEM;
	s->n = n;
	for (i = 0; i < n; i++) {
		s->idx[i].info = infos[i];
		s->idx[i].info.index = i;
		s->idx[i].trig = calloc(infos[i].count ? infos[i].count : 1, 1);
		if (!s->idx[i].trig)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

void brk_irqs_free(struct brk_irqs *s)
{
	uint32_t i;

	if (!s)
		return;
	for (i = 0; i < s->n; i++)
		free(s->idx[i].trig);
	free(s->idx);
	free(s);
}

static bool one_bit(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* The combination of action and data, count and start; see irq.h. */
static int check_shape(const struct brk_irqs *s, const struct irq_index *x,
		       const struct brk_irq_req *q, struct vb_err *err)
{
	const char *name = index_name(s->pci, q->index);

	if (!one_bit(q->action) || (q->action & ~VFIO_IRQ_SET_ACTION_TYPE_MASK))
		return vb_errf(err, -EINVAL, "IRQ action 0x%x is not one known action", q->action);
	if (!one_bit(q->data) || (q->data & ~VFIO_IRQ_SET_DATA_TYPE_MASK))
		return vb_errf(err, -EINVAL, "IRQ data type 0x%x is not one known type", q->data);
	if (q->action == VFIO_IRQ_SET_ACTION_TRIGGER) {
		if (q->data == VFIO_IRQ_SET_DATA_NONE && (q->count != 0 || q->start != 0))
			return vb_errf(err, -EINVAL,
				       "TRIGGER without data must have start 0 and count 0 "
				       "(disable); loopback triggers are not offered");
		if (q->data == VFIO_IRQ_SET_DATA_BOOL)
			return vb_errf(err, -EINVAL, "TRIGGER with BOOL data is not offered");
		if (q->data == VFIO_IRQ_SET_DATA_EVENTFD &&
		    !(x->info.flags & VFIO_IRQ_INFO_EVENTFD))
			return vb_errf(err, -EINVAL, "%s does not signal eventfds", name);
	} else {
		if (!(x->info.flags & VFIO_IRQ_INFO_MASKABLE))
			return vb_errf(err, -EINVAL, "%s (index %u) is not maskable", name,
				       q->index);
		if (q->data == VFIO_IRQ_SET_DATA_EVENTFD &&
		    (q->action != VFIO_IRQ_SET_ACTION_UNMASK ||
		     !(x->info.flags & VFIO_IRQ_INFO_AUTOMASKED) || q->start != 0 || q->count != 1))
			return vb_errf(err, -EINVAL,
				       "an unmask eventfd is for one automasked line (INTx), "
				       "start 0, count 1");
		if (x->enabled == 0)
			return vb_errf(err, -EINVAL, "%s is not enabled: nothing to mask or unmask",
				       name);
		if (q->count == 0)
			return vb_errf(err, -EINVAL, "mask/unmask of 0 vectors");
	}
	if (q->count && (q->start >= x->info.count || q->count > x->info.count - q->start))
		return vb_errf(err, -EINVAL,
			       "%s vectors %u+%u are out of range (the device has %u)", name,
			       q->start, q->count, x->info.count);
	return 0;
}

static int check_data(const struct brk_irq_req *q, struct vb_err *err)
{
	uint32_t i;
	int r;

	if (q->data == VFIO_IRQ_SET_DATA_BOOL && !q->bools)
		return vb_errf(err, -EINVAL, "BOOL data missing");
	if (q->data != VFIO_IRQ_SET_DATA_EVENTFD)
		return 0;
	if (!q->fds || q->nfds != q->count)
		return vb_errf(err, -EINVAL, "%u eventfd slots for %u vectors", q->nfds, q->count);
	for (i = 0; i < q->nfds; i++) {
		if (q->fds[i] == -1)
			continue;
		r = vb_eventfd_check(q->fds[i]);
		if (r == -EBADF)
			return vb_errf(err, r, "slot %u: fd %d is not an open fd", i, q->fds[i]);
		if (r < 0)
			return vb_errf(err, r, "slot %u: fd %d is not an eventfd", i, q->fds[i]);
	}
	return 0;
}

/* NORESIZE and the exclusivity of INTx, MSI and MSI-X on a PCI device. */
static int check_state(const struct brk_irqs *s, const struct irq_index *x,
		       const struct brk_irq_req *q, struct vb_err *err)
{
	uint32_t i;

	if (q->action != VFIO_IRQ_SET_ACTION_TRIGGER || q->data != VFIO_IRQ_SET_DATA_EVENTFD)
		return 0;
	if (s->pci && q->index <= VFIO_PCI_MSIX_IRQ_INDEX) {
		for (i = 0; i <= VFIO_PCI_MSIX_IRQ_INDEX && i < s->n; i++) {
			if (i != q->index && s->idx[i].enabled)
				return vb_errf(err, -EBUSY, "%s is enabled: disable it before %s",
					       index_name(true, i), index_name(true, q->index));
		}
	}
	if (x->enabled && (x->info.flags & VFIO_IRQ_INFO_NORESIZE) &&
	    q->start + q->count > x->enabled)
		return vb_errf(err, -EINVAL,
			       "%s is enabled with %u vectors and cannot grow to %u (NORESIZE): "
			       "disable it first",
			       index_name(s->pci, q->index), x->enabled, q->start + q->count);
	return 0;
}

static int issue(struct brk_irqs *s, const struct brk_irq_req *q)
{
	_cleanup_free_ struct vfio_irq_set *set = NULL;
	size_t dlen = 0;
	int r;

	if (q->data == VFIO_IRQ_SET_DATA_EVENTFD)
		dlen = (size_t)q->count * sizeof(int32_t);
	else if (q->data == VFIO_IRQ_SET_DATA_BOOL)
		dlen = q->count;
	set = calloc(1, sizeof(*set) + dlen);
	if (!set)
		return -ENOMEM;
	set->argsz = (uint32_t)(sizeof(*set) + dlen);
	set->flags = q->action | q->data;
	set->index = q->index;
	set->start = q->start;
	set->count = q->count;
	if (q->data == VFIO_IRQ_SET_DATA_EVENTFD) {
		int32_t *fds = (int32_t *)set->data;
		uint32_t i;

		for (i = 0; i < q->count; i++)
			fds[i] = q->fds[i];
	} else if (dlen) {
		memcpy(set->data, q->bools, dlen);
	}
	r = s->sys->ioctl(s->sys->ctx, s->fd, VFIO_DEVICE_SET_IRQS, set);
	return r < 0 ? r : 0;
}

static void record(struct irq_index *x, const struct brk_irq_req *q)
{
	uint32_t i;

	if (q->action == VFIO_IRQ_SET_ACTION_UNMASK && q->data == VFIO_IRQ_SET_DATA_EVENTFD) {
		x->unmask_fd = q->fds[0] >= 0;
		return;
	}
	if (q->action != VFIO_IRQ_SET_ACTION_TRIGGER)
		return;
	if (q->data == VFIO_IRQ_SET_DATA_NONE) {
		memset(x->trig, 0, x->info.count);
		x->enabled = 0;
		x->triggers = 0;
		x->unmask_fd = false;
		return;
	}
	if (q->start + q->count > x->enabled)
		x->enabled = q->start + q->count;
	for (i = 0; i < q->count; i++) {
		uint8_t on = q->fds[i] >= 0;

		x->triggers += (uint32_t)on - x->trig[q->start + i];
		x->trig[q->start + i] = on;
	}
}

int brk_irq_set(struct brk_irqs *s, const struct brk_irq_req *q, struct vb_err *err)
{
	struct brk_jop op = {.kind = BRK_JOP_IRQ_SET, .index = q->index};
	struct irq_index *x;
	int r;

	if (q->index >= s->n || s->idx[q->index].info.count == 0)
		return vb_errf(err, -EINVAL, "IRQ index %u does not exist on this device",
			       q->index);
	x = &s->idx[q->index];
	r = check_shape(s, x, q, err);
	if (r < 0)
		return r;
	/* Disabling what this broker never enabled: the kernel would say EINVAL, we say done. */
	if (q->action == VFIO_IRQ_SET_ACTION_TRIGGER && q->data == VFIO_IRQ_SET_DATA_NONE &&
	    !x->enabled && !x->triggers && !x->unmask_fd)
		return 0;
	r = check_data(q, err);
	if (r == 0)
		r = check_state(s, x, q, err);
	if (r < 0)
		return r;
	r = brk_journal_intent(&s->journal, &op);
	if (r < 0)
		return vb_errf(err, r, "the broker's state record could not be written: %s",
			       strerror(-r));
	r = issue(s, q);
	if (r == 0)
		record(x, q);
	op.irq_count = x->info.count;
	op.irq_enabled = x->enabled;
	op.irq_unmask_fd = x->unmask_fd;
	op.irq_trig = x->trig;
	brk_journal_done(&s->journal, &op, r == 0);
	if (r < 0)
		return vb_errf(err, r, "VFIO_DEVICE_SET_IRQS on %s: %s",
			       index_name(s->pci, q->index), strerror(-r));
	return 0;
}

int brk_irq_disable(struct brk_irqs *s, uint32_t index, struct vb_err *err)
{
	const struct brk_irq_req q = {
	    .index = index,
	    .action = VFIO_IRQ_SET_ACTION_TRIGGER,
	    .data = VFIO_IRQ_SET_DATA_NONE,
	};

	if (index >= s->n)
		return vb_errf(err, -EINVAL, "IRQ index %u does not exist on this device", index);
	if (s->idx[index].info.count == 0)
		return 0;
	return brk_irq_set(s, &q, err);
}

int brk_irq_disable_all(struct brk_irqs *s)
{
	uint32_t i;
	int r, first = 0;

	for (i = 0; i < s->n; i++) {
		r = brk_irq_disable(s, i, NULL);
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

int brk_irq_status(const struct brk_irqs *s, uint32_t index, struct brk_irq_status *out)
{
	const struct irq_index *x;

	if (index >= s->n)
		return -EINVAL;
	x = &s->idx[index];
	*out = (struct brk_irq_status){
	    .index = index,
	    .flags = x->info.flags,
	    .count = x->info.count,
	    .enabled = x->enabled,
	    .triggers = x->triggers,
	    .unmask_fd = x->unmask_fd,
	};
	return 0;
}

uint32_t brk_irq_count(const struct brk_irqs *s)
{
	return s->n;
}

void brk_irqs_set_journal(struct brk_irqs *s, const struct brk_journal *j)
{
	s->journal = j ? *j : (struct brk_journal){0};
}

int brk_irqs_restore(struct brk_irqs *s, uint32_t index, uint32_t count, uint32_t enabled,
		     bool unmask_fd, const uint8_t *trig, struct vb_err *err)
{
	struct irq_index *x;
	uint32_t i, n = 0;

	if (index >= s->n || s->idx[index].info.count == 0 || s->idx[index].info.count != count)
		return vb_errf(err, -EINVAL,
			       "recorded IRQ index %u with %u vectors: the device has %u there",
			       index, count, index < s->n ? s->idx[index].info.count : 0);
	x = &s->idx[index];
	if (x->enabled || x->triggers || x->unmask_fd)
		return vb_errf(err, -EBUSY, "%s already has state: restore into a new one",
			       index_name(s->pci, index));
	if (enabled > count || (unmask_fd && !enabled))
		return vb_errf(err, -EINVAL, "recorded %s: %u of %u vectors enabled%s",
			       index_name(s->pci, index), enabled, count,
			       unmask_fd ? ", unmask eventfd on a disabled index" : "");
	for (i = 0; i < count; i++) {
		if (trig[i] > 1 || (trig[i] && i >= enabled))
			return vb_errf(err, -EINVAL,
				       "recorded %s: trigger on vector %u of %u enabled",
				       index_name(s->pci, index), i, enabled);
		n += trig[i];
	}
	if (s->pci && index <= VFIO_PCI_MSIX_IRQ_INDEX && enabled) {
		for (i = 0; i <= VFIO_PCI_MSIX_IRQ_INDEX && i < s->n; i++) {
			if (i != index && s->idx[i].enabled)
				return vb_errf(err, -EBUSY, "recorded %s and %s both enabled",
					       index_name(true, i), index_name(true, index));
		}
	}
	memcpy(x->trig, trig, count);
	x->enabled = enabled;
	x->triggers = n;
	x->unmask_fd = unmask_fd;
	return 0;
}
