/*
 * irq_pb: converts a worker's SetIrqs and its attached fds into a brk_irq_req.
 *
 * Trusts nothing in the message: slot indexes are checked against the fds that actually arrived
 * before any is used. What the request means for the device is brk_irq_set()'s to check.
 */
#include <errno.h>
#include <linux/vfio.h>

#include "irq_pb.h"

int brk_irq_req_from_pb(const Vb__Brk__SetIrqs *m, const int *fds, size_t nfds, int *slot_fds,
			size_t slot_cap, struct brk_irq_req *out, struct vb_err *err)
{
	size_t i;

	if (m->disable) {
		if (m->n_fd_slots || m->count || m->start)
			return vb_errf(err, -EINVAL, "disable takes no vectors and no fds");
		*out = (struct brk_irq_req){.index = m->index,
					    .action = VFIO_IRQ_SET_ACTION_TRIGGER,
					    .data = VFIO_IRQ_SET_DATA_NONE};
		return 0;
	}
	if (m->n_fd_slots == 0) {
		*out = (struct brk_irq_req){.index = m->index,
					    .start = m->start,
					    .count = m->count,
					    .action = m->action,
					    .data = VFIO_IRQ_SET_DATA_NONE};
		return 0;
	}
	if (m->n_fd_slots > BRK_IRQ_MAX_SLOTS || m->n_fd_slots > slot_cap)
		return vb_errf(err, -EINVAL, "%zu eventfd slots: too many", m->n_fd_slots);
	if (m->n_fd_slots != m->count)
		return vb_errf(err, -EINVAL, "%zu eventfd slots for %u vectors", m->n_fd_slots,
			       m->count);
	for (i = 0; i < m->n_fd_slots; i++) {
		int32_t s = m->fd_slots[i];

		if (s < -1 || (s >= 0 && (size_t)s >= nfds))
			return vb_errf(err, -EINVAL, "slot %zu names fd %d, but %zu fds arrived", i,
				       s, nfds);
	}
	for (i = 0; i < m->n_fd_slots; i++)
		slot_fds[i] = m->fd_slots[i] < 0 ? -1 : fds[m->fd_slots[i]];
	*out = (struct brk_irq_req){.index = m->index,
				    .start = m->start,
				    .count = m->count,
				    .action = m->action,
				    .data = VFIO_IRQ_SET_DATA_EVENTFD,
				    .fds = slot_fds,
				    .nfds = (uint32_t)m->n_fd_slots};
	return 0;
}
