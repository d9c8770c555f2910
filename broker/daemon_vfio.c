/*
 * daemon_vfio: the VFIO objects of an assignment and of its VM (container, IOMMU groups, the DMA
 * table, the device handle) and the fd store that keeps each for the next broker. Responsible for
 * the order in which they are made and released (container, group, DMA table, device; the
 * reverse on the way out), for quiescing a device whenever its worker goes (interrupts off and
 * its DMA unmapped at once; reset once the process is gone, because only then is no one else
 * touching the device), and for revoking what mmap grants map at release. Trusts daemon.c to
 * have checked the AddDevice against the configuration, and the VFIO core to check everything a
 * worker asks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "bind.h"
#include "daemon_priv.h"
#include "fdstore.h"
#include "irq.h"
#include "log.h"
#include "spawn.h"

/* Keeps `fd` where the next broker finds it (fdstore.h), before the object is used: a crash
 * right after must not lose it. */
int brk_daemon__store_put(struct brk_daemon *dmn, const char *kind, const char *id, int fd,
			  struct vb_err *err)
{
	char name[BRK_FDSTORE_NAME_MAX + 1];
	int r;

	if (!dmn->store)
		return 0;
	r = brk_fdstore_name(name, sizeof(name), kind, id);
	if (r == 0)
		r = brk_fdstore_put(dmn->store, name, fd);
	if (r == -ENOSPC)
		return vb_errf(err, r,
			       "the fd store is full (%zu fds): raise the unit's "
			       "FileDescriptorStoreMax=",
			       brk_fdstore_count(dmn->store));
	return r < 0 ? vb_errf(err, r, "cannot keep %s.%s in the fd store: %s", kind, id,
			       strerror(-r))
		     : 0;
}

/* Before the object's fd is closed. */
void brk_daemon__store_drop(struct brk_daemon *dmn, const char *kind, const char *id)
{
	char name[BRK_FDSTORE_NAME_MAX + 1];
	int r;

	if (!dmn->store)
		return;
	r = brk_fdstore_name(name, sizeof(name), kind, id);
	if (r == 0)
		r = brk_fdstore_remove(dmn->store, name);
	if (r < 0 && r != -ENOENT)
		brk_log_errno(LOG_WARNING, r, "removing %s from the fd store", name);
}

static void dmn_group_id(uint32_t nr, char buf[static 12])
{
	snprintf(buf, 12, "%u", nr);
}

static int dmn_vm_get(struct brk_daemon *dmn, struct brk_vm *vm, const Vb__Ctl__AddDevice *req,
		      struct vb_err *err)
{
	_cleanup_free_ struct dmn_vm *v = NULL;
	int r;

	if (vm->priv)
		return 0;
	v = calloc(1, sizeof(*v));
	if (!v)
		return vb_errf(err, -ENOMEM, "out of memory");
	r = brk_container_new(dmn->sys, err, &v->container);
	if (r < 0)
		return r;
	r = brk_daemon__store_put(dmn, "ctr", vm->name, brk_container_fd(v->container), err);
	if (r < 0) {
		brk_container_unref(v->container);
		return r;
	}
	v->owner_uid = req->owner_uid;
	v->owner_gid = req->owner_gid;
	vm->priv = TAKE_PTR(v);
	return 0;
}

/* Releases the VM's VFIO objects once no device of it holds any: the DMA table first (it
 * accounts for what is left, with the container fd), then the container. */
static void dmn_vm_put(struct brk_daemon *dmn, struct brk_vm *vm)
{
	struct dmn_vm *v = vm->priv;
	uint32_t count = 0;
	uint64_t bytes = 0;

	if (!v || v->live)
		return;
	if (v->dma) {
		/* The last group to leave the container tore its IOMMU down, and every mapping
		 * with it: asking the kernel to unmap them then only fails. While a group is still
		 * attached, they are unmapped. */
		const struct brk_container_info *ci =
		    v->container ? brk_container_info(v->container) : NULL;
		/* A group the kernel kept attached (a VMM still holds an mmap grant of one of its
		 * devices) keeps the IOMMU, and these mappings, alive: unmap them. */
		bool gone = ci && ci->groups == 0 && ci->held_groups == 0;

		if (gone)
			brk_dma_forget_all(v->dma, &count, &bytes);
		else
			brk_dma_unmap_all(v->dma, &count, &bytes);
		if (count)
			brk_warn("vm %s: %u stale mappings (%llu bytes) %s at release", vm->name,
				 count, (unsigned long long)bytes,
				 gone ? "dropped with the last group" : "unmapped");
		brk_dma_free(v->dma);
	}
	brk_daemon__store_drop(dmn, "ctr", vm->name);
	brk_container_unref(v->container);
	brk_spawn_vmm_socket_remove(dmn->cfg->runtime_dir, vm->name, NULL, true);
	free(v);
	vm->priv = NULL;
}

int brk_daemon__group_get(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr,
			  brk_daemon_group_open_fn open, void *ctx, struct dmn_group **ret,
			  struct vb_err *err)
{
	_cleanup_free_ struct dmn_group *ng = NULL;
	struct dmn_group *g;
	char id[12];
	int r;

	for (g = v->groups; g; g = g->next) {
		if (g->nr == nr) {
			g->users++;
			*ret = g;
			return 0;
		}
	}
	ng = calloc(1, sizeof(*ng));
	if (!ng)
		return vb_errf(err, -ENOMEM, "out of memory");
	r = open(dmn, v, nr, ctx, &ng->g, err);
	if (r < 0)
		return r;
	/* A failed put leaves nothing stored under the name. Nothing is dropped on failure: a
	 * group refused because another VM holds it has that VM's fd under this very name. */
	dmn_group_id(nr, id);
	r = brk_daemon__store_put(dmn, "grp", id, brk_group_fd(ng->g), err);
	if (r < 0) {
		brk_group_unref(ng->g);
		return r;
	}
	ng->nr = nr;
	ng->users = 1;
	ng->next = v->groups;
	v->groups = ng;
	*ret = TAKE_PTR(ng);
	return 0;
}

/* AddDevice's way to a group the VM does not have yet: opened and attached to its container. */
static int dmn_group_open(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr, void *ctx,
			  struct brk_group **ret, struct vb_err *err)
{
	int r;

	(void)ctx;
	r = brk_group_open(dmn->sys, nr, err, ret);
	if (r == 0 && (r = brk_group_attach(*ret, v->container, err)) < 0)
		brk_group_unref(*ret);
	return r;
}

/* Names the group's holder for the refusal another VM's AddDevice gets: the VM and the devices
 * of the group it has (those whose records point at this group). */
void brk_daemon__group_describe(struct brk_daemon *dmn, struct dmn_group *g, const char *vm)
{
	char owner[BRK_GROUP_OWNER_MAX];
	size_t len = 0;
	int n;

	for (struct brk_dev_rec *d = brk_registry_first(dmn->reg); d; d = d->next) {
		struct dmn_assignment *dd = d->priv;

		if (!dd || dd->grp != g || len >= sizeof(owner))
			continue;
		n = len ? snprintf(owner + len, sizeof(owner) - len, ", %s", d->bdf)
			: snprintf(owner, sizeof(owner), "vm %s (%s", vm, d->bdf);
		len += n > 0 ? (size_t)n : 0;
	}
	if (len == 0)
		snprintf(owner, sizeof(owner), "vm %s", vm);
	else if (len < sizeof(owner) - 1)
		snprintf(owner + len, sizeof(owner) - len, ")");
	brk_group_set_owner(g->g, owner);
}

static void dmn_group_put(struct brk_daemon *dmn, struct dmn_vm *v, struct dmn_group *g)
{
	struct dmn_group **pp;
	char id[12];

	if (!g || --g->users > 0)
		return;
	for (pp = &v->groups; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	dmn_group_id(g->nr, id);
	brk_daemon__store_drop(dmn, "grp", id);
	brk_group_unref(g->g);
	free(g);
}

/* The VM's DMA table, made when its first group is attached (the IOMMU page size is known from
 * then on), with the quotas of the VM's first AddDevice; in the state record from then on. */
int brk_daemon__vm_dma(struct brk_daemon *dmn, struct brk_vm *vm, struct vb_err *err)
{
	struct dmn_vm *v = vm->priv;
	struct brk_dma_cfg dc = {.sys = dmn->sys,
				 .limits = {vm->max_dma_mappings, vm->max_pinned_bytes}};
	int r;

	/* The container's page size and usable IOVA ranges, so that a map into the MSI window
	 * gets a clear refusal instead of the kernel's bare EINVAL. */
	r = brk_container_dma_cfg(v->container, &dc);
	if (r == 0)
		r = brk_daemon__rec_vm(dmn, vm, dc.flags);
	if (r == 0)
		r = brk_daemon__rec_dma_journal(dmn, vm->name, &dc.journal);
	if (r < 0)
		return vb_errf(err, r, "cannot set up DMA for the VM: %s", strerror(-r));
	r = brk_dma_new(&dc, &v->dma);
	return r < 0 ? vb_errf(err, r, "cannot set up DMA for the VM: %s", strerror(-r)) : 0;
}

int brk_daemon__vfio_open(struct brk_daemon *dmn, struct dmn_assignment *dd,
			  const Vb__Ctl__AddDevice *req, uint32_t maxmap, uint64_t maxpin,
			  struct vb_err *err)
{
	struct brk_dev_rec *d = dd->rec;
	struct dmn_vm *v;
	int r;

	if (req->bind_vfio && (r = brk_bind_vfio(dmn->sys, d->bdf, err)) < 0)
		return r;
	r = brk_bind_iommu_group(dmn->sys, d->bdf, &d->iommu_group, err);
	if (r < 0)
		return r;
	r = dmn_vm_get(dmn, d->vm, req, err);
	if (r < 0)
		return r;
	vb_steps_mark(&dd->add_steps, "sysfs");
	v = d->vm->priv;
	if (v->owner_uid != req->owner_uid || v->owner_gid != req->owner_gid)
		return vb_errf(err, -EPERM, "vm %s belongs to uid %u gid %u, not %u/%u",
			       d->vm->name, (unsigned)v->owner_uid, (unsigned)v->owner_gid,
			       req->owner_uid, req->owner_gid);
	/*
	 * Quotas are the VM's, set by its first device. A later device cannot change them: a
	 * refused AddDevice must leave a running VM exactly as it was, and its workers have been
	 * told the quotas. 0 (or no limits) there means "the VM's".
	 */
	if (v->dma && req->limits &&
	    ((req->limits->max_dma_mappings &&
	      req->limits->max_dma_mappings != d->vm->max_dma_mappings) ||
	     (req->limits->max_pinned_bytes &&
	      req->limits->max_pinned_bytes != d->vm->max_pinned_bytes)))
		return vb_errf(
		    err, -EBUSY,
		    "vm %s has quotas of %u DMA mappings and %llu pinned bytes, set by its "
		    "first device; a device added to it cannot change them",
		    d->vm->name, d->vm->max_dma_mappings,
		    (unsigned long long)d->vm->max_pinned_bytes);
	r = brk_daemon__group_get(dmn, v, d->iommu_group, dmn_group_open, NULL, &dd->grp, err);
	if (r < 0)
		return r;
	brk_daemon__group_describe(dmn, dd->grp, d->vm->name);
	vb_steps_mark(&dd->add_steps, "group");
	if (!v->dma) {
		d->vm->max_dma_mappings = maxmap;
		d->vm->max_pinned_bytes = maxpin;
		r = brk_daemon__vm_dma(dmn, d->vm, err);
		if (r < 0)
			return r;
		vb_steps_mark(&dd->add_steps, "dma_table");
	}
	r = brk_vfio_dev_open(dd->grp->g, d->bdf, err, &dd->device);
	if (r < 0)
		return r;
	v->live++;
	r = brk_daemon__store_put(dmn, "dev", d->bdf, brk_vfio_dev_fd(dd->device), err);
	if (r < 0)
		return r;
	vb_steps_mark(&dd->add_steps, "device");
	/* In the record before its first SET_IRQS, which the record journals from then on. */
	r = brk_daemon__rec_dev(dd);
	if (r == 0)
		r = brk_daemon__rec_irq_journal(dd);
	if (r < 0)
		return vb_errf(err, r, "cannot write the state record: %s", strerror(-r));
	vb_steps_mark(&dd->add_steps, "record_device");
	/* A clean device for the new owner: whatever the last one left is gone. */
	brk_daemon__reset(dd);
	vb_steps_mark(&dd->add_steps, "reset");
	return 0;
}

/* Interrupts off and the device's DMA unmapped: what can be done while a worker may still be
 * running (it has no way to undo either: its channel is closed). */
void brk_daemon__quiesce(struct dmn_assignment *dd)
{
	struct dmn_vm *v = dd->rec->vm->priv;
	uint32_t count = 0;
	uint64_t bytes = 0;
	int r;

	if (!dd->device)
		return;
	r = brk_irq_disable_all(brk_vfio_dev_irqs(dd->device));
	if (r < 0)
		brk_log_errno(LOG_WARNING, r, "%s: disabling interrupts", dd->rec->bdf);
	if (v && v->dma) {
		r = brk_dma_unmap_owner(v->dma, dd->rec->id, &count, &bytes);
		if (r < 0)
			brk_log_errno(LOG_ERR, r, "%s: unmapping DMA", dd->rec->bdf);
		else if (count)
			brk_info("%s: unmapped %u DMA mappings (%llu bytes)", dd->rec->bdf, count,
				 (unsigned long long)bytes);
	}
}

/* Once the worker is gone: nobody else touches the device, so reset it. */
void brk_daemon__reset(struct dmn_assignment *dd)
{
	struct vb_err err = {0};
	int r;

	if (!dd->device)
		return;
	r = brk_vfio_dev_reset(dd->device, &err);
	if (r == -ENOTTY)
		brk_warn("%s: no reset method: the device keeps its state", dd->rec->bdf);
	else if (r < 0)
		brk_warn("%s: reset failed: %s", dd->rec->bdf, err.msg);
}

/* Revokes what mmap grants map: with decoding off the kernel zaps every mapping of the BARs, in
 * the VMM too, and keeps faults on them failing (SIGBUS); bus mastering off stops the device's
 * own DMA. A grant holder that kept its file can turn them on again, but only on this device,
 * which no other VM can have while that file is open (README, "Mmap grants"). */
static void dmn_revoke(struct dmn_assignment *dd)
{
	struct vb_err err = {0};

	if (brk_vfio_dev_stop_decoding(dd->device, &err) < 0)
		brk_warn("%s: cannot turn decoding off: %s", dd->rec->bdf, err.msg);
}

/* The broker has let go of group `nr` after handing out mmap grants of a device in it: if one is
 * still open, the group is too, and nobody else can have it. Say who has it, now and when the
 * next AddDevice of the group gets EBUSY. */
static void dmn_group_released(struct dmn_assignment *dd, uint32_t nr,
			       const struct brk_grant_info *gi)
{
	char holder[BRK_GROUP_HOLDER_MAX];
	int r;

	snprintf(holder, sizeof(holder),
		 "the mmap grant of %s (vm %s) went to VMM pid %d (uid %u), which (or a process "
		 "it passed the file to) still holds it",
		 dd->rec->bdf, dd->rec->vm->name, (int)gi->pid, (unsigned)gi->uid);
	r = brk_group_check_released(dd->dmn->sys, nr, holder);
	if (r == 0)
		return;
	if (r != -EBUSY) {
		brk_log_errno(LOG_WARNING, r, "%s: checking that IOMMU group %u is released",
			      dd->rec->bdf, nr);
		return;
	}
	brk_warn("%s: IOMMU group %u stays open: %s; no VM can have it until that file is closed "
		 "(its mappings are revoked: decoding is off)",
		 dd->rec->bdf, nr, holder);
	snprintf(dd->held, sizeof(dd->held),
		 "IOMMU group %u still held by VMM pid %d (uid %u) through its mmap grant", nr,
		 (int)gi->pid, (unsigned)gi->uid);
}

/* Gives back everything the device holds: worker (killed and reaped), VMM socket, device handle,
 * group reference, and the VM's container when this was its last live device. The record
 * stays. */
void brk_daemon__dev_release(struct dmn_assignment *dd)
{
	struct brk_dev_rec *d = dd->rec;
	struct dmn_vm *v = d->vm->priv;
	struct brk_grant_info grants = {0};

	if (dd->worker)
		brk_daemon__worker_free(dd);
	if (dd->vmm_fd >= 0) {
		close(dd->vmm_fd);
		dd->vmm_fd = -1;
	}
	if (dd->vfu_fd >= 0) {
		close(dd->vfu_fd);
		dd->vfu_fd = -1;
	}
	if (d->socket_path[0])
		brk_spawn_vmm_socket_remove(dd->dmn->cfg->runtime_dir, d->vm->name, d->socket_path,
					    false);
	d->socket_path[0] = '\0';
	if (d->vfu_socket_path[0])
		brk_spawn_vmm_socket_remove(dd->dmn->cfg->runtime_dir, d->vm->name,
					    d->vfu_socket_path, false);
	d->vfu_socket_path[0] = '\0';
	if (dd->device) {
		brk_daemon__quiesce(dd);
		dmn_revoke(dd);
		grants = *brk_vfio_dev_grants(dd->device);
		dd->resets_before += brk_vfio_dev_resets(dd->device);
		brk_daemon__store_drop(dd->dmn, "dev", d->bdf);
		brk_vfio_dev_free(dd->device);
		dd->device = NULL;
		if (v)
			v->live--;
	}
	if (v && dd->grp) {
		struct dmn_group *g = dd->grp;
		uint32_t nr = g->nr, users = g->users;

		dd->grp = NULL;
		if (users > 1)
			brk_daemon__group_describe(dd->dmn, g, d->vm->name);
		dmn_group_put(dd->dmn, v, g);
		if (users == 1 && grants.issued)
			dmn_group_released(dd, nr, &grants);
	}
	if (v)
		dmn_vm_put(dd->dmn, d->vm);
}

/* Drops the record (and its VM's, when it was the last). Call after brk_daemon__dev_release(). */
void brk_daemon__dev_forget(struct dmn_assignment *dd)
{
	struct brk_daemon *dmn = dd->dmn;
	struct brk_dev_rec *d = dd->rec;
	struct brk_vm *vm = d->vm;

	if (dd->add_call)
		brk_ctl_call_error(dd->add_call, -ECANCELED, "%s: removed while starting", d->bdf);
	if (dd->remove_call && d->state == BRK_DEV_REMOVING && !dmn->ctl)
		brk_ctl_call_error(dd->remove_call, -ECANCELED, "the broker is shutting down");
	brk_daemon__rec_dev_del(dmn, d->bdf);
	brk_registry_remove(dmn->reg, d);
	free(dd);
	if (!vm->ndevices) {
		/* Its devices' records refer to it until the last is gone. */
		brk_daemon__rec_vm_del(dmn, vm->name);
		brk_registry_drop_vm(dmn->reg, vm);
	}
}
