/*
 * daemon_record: the daemon's side of the state record (record.h): what it writes there, and
 * when, so that a broker started after a crash, restart or re-exec finds every VM and device as
 * they are. A VM is put when its DMA table is made (before its first map) and deleted after the
 * table is freed; a device is put when its handle is opened (before its first SET_IRQS), again
 * at each change the next broker needs (worker, state, fault), and deleted when it is forgotten.
 * The DMA table and the device's interrupts journal their own kernel calls through the hooks
 * set up here. Nothing is written without a record (no fd store: nothing would read it).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon_priv.h"
#include "irq.h"
#include "log.h"
#include "record.h"

int brk_daemon__rec_vm(struct brk_daemon *dmn, const struct brk_vm *vm, uint32_t dma_flags)
{
	const struct dmn_vm *v = vm->priv;
	struct brk_rec_vm rv = {0};

	if (!dmn->rec)
		return 0;
	snprintf(rv.name, sizeof(rv.name), "%s", vm->name);
	rv.max_mappings = vm->max_dma_mappings;
	rv.max_pinned_bytes = vm->max_pinned_bytes;
	rv.owner_uid = v->owner_uid;
	rv.owner_gid = v->owner_gid;
	rv.dma_flags = dma_flags;
	return brk_record_vm_put(dmn->rec, &rv);
}

void brk_daemon__rec_vm_del(struct brk_daemon *dmn, const char *vm)
{
	int r;

	if (!dmn->rec)
		return;
	r = brk_record_vm_del(dmn->rec, vm);
	if (r < 0 && r != -ENOENT)
		brk_log_errno(LOG_ERR, r, "vm %s: removing it from the state record", vm);
}

int brk_daemon__rec_dma_journal(struct brk_daemon *dmn, const char *vm, struct brk_journal *j)
{
	return dmn->rec ? brk_record_dma_journal(dmn->rec, vm, j) : 0;
}

int brk_daemon__rec_dev(struct dmn_assignment *dd)
{
	const struct brk_dev_rec *d = dd->rec;
	struct brk_rec_dev rd = {0};
	int r;

	if (!dd->dmn->rec)
		return 0;
	snprintf(rd.bdf, sizeof(rd.bdf), "%s", d->bdf);
	snprintf(rd.vm, sizeof(rd.vm), "%s", d->vm->name);
	rd.state = (uint32_t)d->state;
	rd.id = d->id;
	rd.owner_uid = d->owner_uid;
	rd.owner_gid = d->owner_gid;
	rd.allow_mmap = d->allow_mmap;
	rd.protocols = d->protocols;
	rd.iommu_group = d->iommu_group;
	snprintf(rd.socket_path, sizeof(rd.socket_path), "%s", d->socket_path);
	snprintf(rd.vfu_socket_path, sizeof(rd.vfu_socket_path), "%s", d->vfu_socket_path);
	rd.generation = dd->generation;
	rd.restarts = d->restarts;
	rd.worker_pid = d->worker_pid > 0 ? (uint32_t)d->worker_pid : 0;
	rd.worker_uid = dd->worker_uid;
	rd.worker_gid = dd->worker_gid;
	rd.resets_before = dd->resets_before;
	snprintf(rd.last_fault, sizeof(rd.last_fault), "%s", d->last_fault);
	r = brk_record_dev_put(dd->dmn->rec, &rd);
	if (r < 0)
		brk_log_errno(LOG_ERR, r, "%s: writing the state record", d->bdf);
	return r;
}

void brk_daemon__rec_dev_del(struct brk_daemon *dmn, const char *bdf)
{
	int r;

	if (!dmn->rec)
		return;
	r = brk_record_dev_del(dmn->rec, bdf);
	if (r < 0 && r != -ENOENT)
		brk_log_errno(LOG_ERR, r, "%s: removing it from the state record", bdf);
}

int brk_daemon__rec_irq_journal(struct dmn_assignment *dd)
{
	struct brk_journal j;
	int r;

	if (!dd->dmn->rec || !dd->device)
		return 0;
	r = brk_record_irq_journal(dd->dmn->rec, dd->rec->bdf, &j);
	if (r < 0)
		return r;
	brk_irqs_set_journal(brk_vfio_dev_irqs(dd->device), &j);
	return 0;
}
