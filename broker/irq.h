/*
 * irq: VFIO_DEVICE_SET_IRQS for one device, validated against the IRQ info the kernel reported,
 * with a record of what is enabled so that status can be answered and everything can be turned
 * off when the device is quiesced.
 *
 * Requests come from a worker (on behalf of its VMM), so nothing is trusted: index, start and
 * count are checked against the index's count without overflow; every eventfd slot must be an
 * eventfd (or -1: no trigger on that vector); MSI and MSI-X honour NORESIZE (once enabled with N
 * vectors, growing needs a disable first); INTx, MSI and MSI-X of a PCI device are exclusive.
 * Fds are always borrowed: the kernel takes its own references.
 */
#ifndef VB_BROKER_IRQ_H
#define VB_BROKER_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#include "journal.h"
#include "sys.h"
#include "vfio.h"

/* One VFIO_DEVICE_SET_IRQS. `action` is one of VFIO_IRQ_SET_ACTION_TRIGGER, _MASK, _UNMASK;
 * `data` one of VFIO_IRQ_SET_DATA_NONE, _BOOL, _EVENTFD. Accepted combinations:
 *   TRIGGER + EVENTFD, count >= 1: install (fd) or remove (-1) the trigger of each vector;
 *   TRIGGER + NONE, count 0:        disable the whole index (see brk_irq_disable);
 *   MASK/UNMASK + NONE, count >= 1: mask/unmask the vectors (index must be MASKABLE);
 *   MASK/UNMASK + BOOL, count >= 1: mask/unmask the vectors whose byte is non-zero;
 *   UNMASK + EVENTFD, count 1:      INTx resample: the eventfd unmasks the line (AUTOMASKED
 *                                   indexes only), -1 removes it.
 * Anything else (e.g. TRIGGER + NONE with a count, a loopback trigger) is refused. */
struct brk_irq_req {
	uint32_t index;
	uint32_t start;
	uint32_t count;
	uint32_t action;
	uint32_t data;
	const int *fds; /* EVENTFD: `nfds` entries, nfds == count */
	uint32_t nfds;
	const uint8_t *bools; /* BOOL: `count` entries */
};

/* What one index has now, as far as this broker set it. */
struct brk_irq_status {
	uint32_t index;
	uint32_t flags;	   /* VFIO_IRQ_INFO_* */
	uint32_t count;	   /* vectors the device has */
	uint32_t enabled;  /* vectors the index is enabled with (MSI/MSI-X allocation); 0: off */
	uint32_t triggers; /* vectors with a trigger eventfd installed */
	bool unmask_fd;	   /* INTx: a resample (unmask) eventfd is installed */
};

struct brk_irqs;

/* The interrupt state of a device fd with these indexes. `infos` is copied. `device_fd` is
 * borrowed and must outlive the state. `pci` turns on the INTx/MSI/MSI-X exclusion.
 * brk_vfio_dev_open() makes one per device (brk_vfio_dev_irqs()); this constructor is for callers
 * and tests that hold a device fd some other way. Errors: -EINVAL (n > BRK_DEVICE_MAX_IRQS, or
 * an index count above 2048), -ENOMEM. */
int brk_irqs_new(const struct brk_sys *sys, int device_fd, bool pci,
		 const struct brk_irq_info *infos, uint32_t n, struct brk_irqs **ret);
void brk_irqs_free(struct brk_irqs *irqs);

/* Validates, then VFIO_DEVICE_SET_IRQS. Errors, each with a message in `err`:
 *   -EINVAL  unknown index or one the device lacks; start/count out of range or overflowing;
 *            a combination not listed above; nfds != count; bools missing;
 *            MASK/UNMASK on an index that is not MASKABLE; MSI/MSI-X growth under NORESIZE;
 *   -EBADF   a slot is neither -1 nor an open fd;
 *   -EACCES  a slot's fd is not an eventfd;
 *   -EBUSY   another of INTx/MSI/MSI-X is enabled on this PCI device (disable it first);
 *   or the kernel's error. The record changes only when the kernel accepted the request. */
int brk_irq_set(struct brk_irqs *irqs, const struct brk_irq_req *req, struct vb_err *err);
/* Disables one index (TRIGGER + DATA_NONE, count 0). A no-op, returning 0, when this broker
 * has nothing enabled there. */
int brk_irq_disable(struct brk_irqs *irqs, uint32_t index, struct vb_err *err);
/* Disables every index that has something enabled. Returns 0, or the first error after trying
 * every index. */
int brk_irq_disable_all(struct brk_irqs *irqs);
/* Errors: -EINVAL for an unknown index. */
int brk_irq_status(const struct brk_irqs *irqs, uint32_t index, struct brk_irq_status *out);
uint32_t brk_irq_count(const struct brk_irqs *irqs); /* number of indexes */

/* Calls `j` (copied; NULL: none) around every SET_IRQS from now on (journal.h). A journal that
 * refuses the intent fails brk_irq_set() with its error and no ioctl. */
void brk_irqs_set_journal(struct brk_irqs *irqs, const struct brk_journal *j);

/* Sets one index's record as a loaded state record says, without an ioctl: the kernel still has
 * it (the broker restarted with the device fd). `trig` has `count` entries, 1 where the vector
 * has a trigger. Errors, with a message: -EINVAL (no such index, `count` is not the device's,
 * more vectors enabled than it has, a trigger on a vector not enabled, an unmask eventfd on a
 * disabled index), -EBUSY (the index already has state, or another of INTx/MSI/MSI-X of this
 * PCI device is enabled). The journal is not called. */
int brk_irqs_restore(struct brk_irqs *irqs, uint32_t index, uint32_t count, uint32_t enabled,
		     bool unmask_fd, const uint8_t *trig, struct vb_err *err);

#endif
