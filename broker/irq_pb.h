/*
 * irq_pb: a worker's SetIrqs request (proto/broker.proto) and the fds that came with it, turned
 * into a struct brk_irq_req for brk_irq_set(). Kept apart from irq.h so that only request
 * handlers see generated protobuf types.
 */
#ifndef VB_BROKER_IRQ_PB_H
#define VB_BROKER_IRQ_PB_H

#include <stddef.h>

#include "broker.pb-c.h"
#include "irq.h"

/* Most eventfd slots one request may carry: the PCI spec's most MSI-X vectors. */
#define BRK_IRQ_MAX_SLOTS 2048u

/* Fills `out` from `m`:
 *   disable:          TRIGGER + DATA_NONE, start 0, count 0 (fd_slots must be empty);
 *   fd_slots present: DATA_EVENTFD, count == n_fd_slots, slot i -> fds[fd_slots[i]] or -1;
 *   otherwise:        DATA_NONE (mask/unmask; brk_irq_set() refuses the rest).
 * `slot_fds` (room for `slot_cap` ints) receives the per-vector fds and backs out->fds, so it
 * must live as long as `out` is used. The fds stay owned by the caller (the received message):
 * brk_irq_set() borrows them and the kernel takes its own references, so the caller closes
 * every received fd afterwards whatever happened.
 * Errors, with a message in `err`: -EINVAL (a slot below -1 or beyond the fds that arrived,
 * count != n_fd_slots, disable with slots or a count, more slots than slot_cap or
 * BRK_IRQ_MAX_SLOTS). */
int brk_irq_req_from_pb(const Vb__Brk__SetIrqs *m, const int *fds, size_t nfds, int *slot_fds,
			size_t slot_cap, struct brk_irq_req *out, struct vb_err *err);

#endif
