/*
 * daemon: AddDevice, RemoveDevice, worker faults and restarts. Responsible for the order in
 * which VFIO objects are made and released (container, group, device, DMA table; the reverse on
 * the way out), for leaving nothing behind when a step fails, for quiescing a device whenever
 * its worker goes (interrupts off and its DMA unmapped at once; reset once the process is gone,
 * because only then is no one else touching the device), and for the restart policy. Trusts
 * control.c to have checked request shapes and the VFIO core to check everything a worker asks.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "bind.h"
#include "daemon_priv.h"
#include "irq.h"
#include "log.h"
#include "record.h"
#include "spawn.h"

static void dmn_dev_release(struct dmn_dev *dd);
static void dmn_dev_forget(struct dmn_dev *dd);
static void dmn_worker_args(struct dmn_dev *dd, struct brk_worker_args *a);
static int dmn_start_worker(struct dmn_dev *dd, struct vb_err *err);

/* ---- the fd store -------------------------------------------------------------------------- */

/* Keeps `fd` where the next broker finds it (fdstore.h), before the object is used: a crash
 * right after must not lose it. */
static int dmn_store_put(struct brk_daemon *dmn, const char *kind, const char *id, int fd,
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
static void dmn_store_drop(struct brk_daemon *dmn, const char *kind, const char *id)
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

/* The worker's channel and pidfd: with them the next broker keeps the worker. */
static int dmn_store_worker(struct dmn_dev *dd, struct vb_err *err)
{
	struct brk_daemon *dmn = dd->dmn;
	int chan = -1, pidfd = -1, r;

	if (!dmn->store || !dmn->workers->fds)
		return 0;
	dmn->workers->fds(dd->worker, &chan, &pidfd);
	r = dmn_store_put(dmn, "wch", dd->rec->bdf, chan, err);
	if (r == 0)
		r = dmn_store_put(dmn, "wpid", dd->rec->bdf, pidfd, err);
	return r;
}

static void dmn_worker_free(struct dmn_dev *dd)
{
	dmn_store_drop(dd->dmn, "wpid", dd->rec->bdf);
	dmn_store_drop(dd->dmn, "wch", dd->rec->bdf);
	dd->dmn->workers->free(dd->worker);
	dd->worker = NULL;
	dd->rec->worker_pid = 0;
}

/* ---- VM resources ------------------------------------------------------------------------- */

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
	r = dmn_store_put(dmn, "ctr", vm->name, brk_container_fd(v->container), err);
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
	dmn_store_drop(dmn, "ctr", vm->name);
	brk_container_unref(v->container);
	brk_spawn_vmm_socket_remove(dmn->cfg->runtime_dir, vm->name, NULL, true);
	free(v);
	vm->priv = NULL;
}

static int dmn_group_get(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr, struct vb_err *err,
			 struct dmn_group **ret)
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
	r = brk_group_open(dmn->sys, nr, err, &ng->g);
	if (r == 0)
		r = brk_group_attach(ng->g, v->container, err);
	dmn_group_id(nr, id);
	if (r == 0)
		r = dmn_store_put(dmn, "grp", id, brk_group_fd(ng->g), err);
	if (r < 0) {
		dmn_store_drop(dmn, "grp", id);
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

/* Names the group's holder for the refusal another VM's AddDevice gets: the VM and the devices
 * of the group it has (those whose records point at this group). */
static void dmn_group_describe(struct brk_daemon *dmn, struct dmn_group *g, const char *vm)
{
	char owner[BRK_GROUP_OWNER_MAX];
	size_t len = 0;
	int n;

	for (struct brk_dev *d = brk_registry_first(dmn->reg); d; d = d->next) {
		struct dmn_dev *dd = d->priv;

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
	dmn_store_drop(dmn, "grp", id);
	brk_group_unref(g->g);
	free(g);
}

/* The VM's DMA table, made when its first group is attached (the IOMMU page size is known from
 * then on), with the quotas of the VM's first AddDevice; in the state record from then on. */
static int dmn_vm_dma(struct brk_daemon *dmn, struct brk_vm *vm, uint32_t maxmap, uint64_t maxpin,
		      struct vb_err *err)
{
	struct dmn_vm *v = vm->priv;
	struct brk_dma_cfg dc = {.sys = dmn->sys, .limits = {maxmap, maxpin}};
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

/* ---- helpers --------------------------------------------------------------------------------- */

int brk_daemon__read_id(const struct brk_sys *sys, const char *bdf, const char *attr, uint16_t *ret)
{
	_cleanup_close_ int fd = -1;
	char path[256], buf[16];
	unsigned v;
	ssize_t n;

	if (brk_sys_path(sys, path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr) < 0)
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	if (sscanf(buf, "0x%4x", &v) != 1)
		return -EIO;
	*ret = (uint16_t)v;
	return 0;
}

/* A uid from the configured range that no live worker uses; a shared user= is always free. */
static int dmn_worker_uid(struct brk_daemon *dmn, uid_t *uid, gid_t *gid)
{
	const struct brk_config *c = dmn->cfg;

	if (c->worker_user_set) {
		*uid = c->worker_uid_first;
		*gid = c->worker_gid;
		return 0;
	}
	for (uint64_t u = c->worker_uid_first; u <= c->worker_uid_last; u++) {
		bool used = false;
		for (struct brk_dev *d = brk_registry_first(dmn->reg); d && !used; d = d->next) {
			struct dmn_dev *dd = d->priv;
			used = dd && dd->worker && dd->worker_uid == (uid_t)u;
		}
		if (!used) {
			*uid = (uid_t)u;
			*gid = (gid_t)u;
			return 0;
		}
	}
	return -EUSERS;
}

static Vb__Ctl__EventKind dmn_fault_event(enum brk_worker_fault k)
{
	return k == BRK_WORKER_HUNG ? VB__CTL__EVENT_KIND__EVENT_WORKER_HUNG
				    : VB__CTL__EVENT_KIND__EVENT_WORKER_CRASHED;
}

/* Interrupts off and the device's DMA unmapped: what can be done while a worker may still be
 * running (it has no way to undo either: its channel is closed). */
static void dmn_quiesce_now(struct dmn_dev *dd)
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
static void dmn_reset(struct dmn_dev *dd)
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

/* ---- worker hooks ------------------------------------------------------------------------------
 */

static void dmn_reply_add(struct dmn_dev *dd)
{
	Vb__Ctl__AddDeviceReply rep = VB__CTL__ADD_DEVICE_REPLY__INIT;
	struct dmn_vm *v = dd->rec->vm->priv;

	rep.socket_path = dd->rec->socket_path;
	rep.vfio_user_socket_path = dd->rec->vfu_socket_path;
	rep.protocol = (Vb__Ctl__Protocol)dd->rec->protocols;
	rep.worker_pid = (uint32_t)dd->rec->worker_pid;
	rep.iommu_group = dd->rec->iommu_group;
	rep.iommu_backend = (char *)brk_container_backend_name(v->container);
	brk_ctl_call_reply(dd->add_call, &rep.base);
	dd->add_call = NULL;
}

static void dmn_on_ready(void *ctx)
{
	struct dmn_dev *dd = ctx;
	struct brk_dev *d = dd->rec;

	/* The worker has its own copies of the listening sockets now. */
	if (dd->vmm_fd >= 0)
		close(dd->vmm_fd);
	dd->vmm_fd = -1;
	if (dd->vfu_fd >= 0)
		close(dd->vfu_fd);
	dd->vfu_fd = -1;
	/* Removed while it was starting: the removal goes on. */
	if (d->state != BRK_DEV_STARTING || brk_dev_set_state(d, BRK_DEV_READY) < 0)
		return;
	brk_daemon__rec_dev(dd);
	brk_info("%s: worker %d ready (vm %s, socket %s%s%s%s%s)", d->bdf, (int)d->worker_pid,
		 d->vm->name, d->socket_path,
		 d->socket_path[0] && d->vfu_socket_path[0] ? ", " : "",
		 d->vfu_socket_path[0] ? "vfio-user " : "", d->vfu_socket_path,
		 dd->adopted	  ? ", adopted from the last broker"
		 : dd->generation ? ", restarted"
		 : dd->hotplug	  ? ", hot-plugged into the running VM"
				  : "");
	if (dd->adopted) {
		dd->adopted = false; /* the same worker as before: nothing to announce */
	} else if (dd->add_call) {
		dmn_reply_add(dd);
		dd->dmn->adds_total++;
		brk_ctl_event(dd->dmn->ctl, VB__CTL__EVENT_KIND__EVENT_DEVICE_ADDED, d->bdf,
			      d->vm->name, "worker %d, socket %s%s%s", (int)d->worker_pid,
			      d->socket_path, d->vfu_socket_path[0] ? " vfio-user " : "",
			      d->vfu_socket_path);
	} else {
		brk_ctl_event(dd->dmn->ctl, VB__CTL__EVENT_KIND__EVENT_WORKER_RESTARTED, d->bdf,
			      d->vm->name, "restart %u: worker %d", dd->generation,
			      (int)d->worker_pid);
	}
}

static void dmn_on_vmm_state(void *ctx, bool connected, uint32_t pid, uint32_t uid)
{
	struct dmn_dev *dd = ctx;
	struct brk_dev *d = dd->rec;

	if (d->state == BRK_DEV_READY || d->state == BRK_DEV_CONNECTED) {
		brk_dev_set_state(d, connected ? BRK_DEV_CONNECTED : BRK_DEV_READY);
		brk_daemon__rec_dev(dd);
	}
	brk_info("%s: VMM pid %u uid %u %s", d->bdf, pid, uid,
		 connected ? "connected" : "disconnected");
	if (!connected) {
		/* The VMM's memory and irqfds mean nothing without it; a worker that forgot to
		 * unmap must not keep its pages pinned. */
		dmn_quiesce_now(dd);
	}
	brk_ctl_event(dd->dmn->ctl,
		      connected ? VB__CTL__EVENT_KIND__EVENT_VMM_CONNECTED
				: VB__CTL__EVENT_KIND__EVENT_VMM_DISCONNECTED,
		      d->bdf, d->vm->name, "VMM pid %u uid %u", pid, uid);
}

static void dmn_on_removal_done(void *ctx, bool acknowledged)
{
	struct dmn_dev *dd = ctx;

	dd->vmm_acknowledged = acknowledged;
	if (!acknowledged)
		brk_notice("%s: the VMM did not acknowledge the removal: forcing it", dd->rec->bdf);
	dd->dmn->workers->kill(dd->worker);
}

static void dmn_on_fault(void *ctx, enum brk_worker_fault kind, const char *reason)
{
	struct dmn_dev *dd = ctx;
	struct brk_dev *d = dd->rec;
	bool adding;

	brk_err("%s: worker %d %s: %s", d->bdf, (int)d->worker_pid,
		kind == BRK_WORKER_HUNG ? "hung" : "faulted", reason);
	brk_dev_set_fault(d, "%s", reason);
	dmn_quiesce_now(dd);
	brk_ctl_event(dd->dmn->ctl, dmn_fault_event(kind), d->bdf, d->vm->name, "%s", reason);
	adding = dd->add_call != NULL;
	if (adding) {
		/* AddDevice fails as a whole: nothing of it stays once the process is reaped. */
		brk_ctl_call_error(dd->add_call, -ECHILD, "%s: the worker failed to start: %s",
				   d->bdf, reason);
		dd->add_call = NULL;
	}
	/* A removal under way completes whatever the worker does meanwhile. */
	if (d->state == BRK_DEV_REMOVING)
		return;
	if (d->state == BRK_DEV_STARTING)
		brk_dev_set_state(d, adding ? BRK_DEV_ABANDONED : BRK_DEV_FAILED_START);
	else
		brk_dev_set_state(d, BRK_DEV_FAILING);
	brk_daemon__rec_dev(dd);
}

static void dmn_finish_removal(struct dmn_dev *dd)
{
	Vb__Ctl__RemoveDeviceReply rep = VB__CTL__REMOVE_DEVICE_REPLY__INIT;
	struct brk_ctl_call *call = dd->remove_call;
	struct brk_daemon *dmn = dd->dmn;
	char bdf[VB_BDF_LEN], vm[BRK_VM_NAME_MAX + 1], held[sizeof(dd->held)];

	snprintf(bdf, sizeof(bdf), "%s", dd->rec->bdf);
	snprintf(vm, sizeof(vm), "%s", dd->rec->vm->name);
	rep.vmm_acknowledged = dd->vmm_acknowledged;
	dmn_dev_release(dd);
	snprintf(held, sizeof(held), "%s", dd->held);
	dmn_dev_forget(dd);
	dmn->removes_total++;
	brk_info("%s: removed from vm %s", bdf, vm);
	if (call)
		brk_ctl_call_reply(call, &rep.base);
	brk_ctl_event(dmn->ctl, VB__CTL__EVENT_KIND__EVENT_DEVICE_REMOVED, bdf, vm, "%s%s%s",
		      rep.vmm_acknowledged ? "acknowledged by the VMM" : "forced",
		      held[0] ? "; " : "", held);
}

/* The restart policy, for a worker that had come up and then failed (FAILING). */
static void dmn_restart(struct dmn_dev *dd)
{
	struct brk_dev *d = dd->rec;
	const struct brk_config *cfg = dd->dmn->cfg;
	struct vb_err err = {0};

	if (cfg->restart == BRK_RESTART_ON_FAILURE && d->restarts < cfg->restart_max) {
		d->restarts++;
		dd->dmn->restarts_total++;
		dd->generation++;
		brk_dev_set_state(d, BRK_DEV_STARTING);
		if (dmn_start_worker(dd, &err) == 0)
			return;
		brk_err("%s: restart failed: %s", d->bdf, err.msg);
		brk_dev_set_fault(d, "restart failed: %s", err.msg);
	} else if (cfg->restart == BRK_RESTART_ON_FAILURE) {
		brk_err("%s: %u restarts used up: the device stays faulted", d->bdf, d->restarts);
	}
	/* Faulted for good: give the VFIO objects back; the record stays for DeviceStatus until
	 * RemoveDevice or a new AddDevice. */
	dmn_dev_release(dd);
	brk_dev_set_state(d, BRK_DEV_FAULTED);
	brk_daemon__rec_dev(dd);
}

/* The worker has been reaped: what follows depends only on the state it left the device in. */
static void dmn_on_exited(void *ctx, int code, int status)
{
	struct dmn_dev *dd = ctx;
	struct brk_dev *d = dd->rec;

	dmn_worker_free(dd);
	dmn_reset(dd);
	switch (d->state) {
	case BRK_DEV_REMOVING:
		dmn_finish_removal(dd);
		break;
	case BRK_DEV_ABANDONED:
		dmn_dev_release(dd);
		dmn_dev_forget(dd);
		break;
	case BRK_DEV_FAILING:
		dmn_restart(dd);
		break;
	case BRK_DEV_FAILED_START:
		/* A restarted worker that never came up is not restarted again: the next one
		 * would fail the same way. */
		dmn_dev_release(dd);
		brk_dev_set_state(d, BRK_DEV_FAULTED);
		brk_daemon__rec_dev(dd);
		break;
	default:
		/* worker.c reports every exit it did not cause as a fault first. */
		brk_warn("%s: worker exited in state %s without a fault", d->bdf,
			 brk_dev_state_name(d->state));
		break;
	}
}

static const struct brk_worker_hooks dmn_worker_hooks = {
    .ready = dmn_on_ready,
    .vmm_state = dmn_on_vmm_state,
    .removal_done = dmn_on_removal_done,
    .fault = dmn_on_fault,
    .exited = dmn_on_exited,
};

/* What the device's worker is started (or adopted) with. */
static void dmn_worker_args(struct dmn_dev *dd, struct brk_worker_args *a)
{
	struct brk_dev *d = dd->rec;
	struct dmn_vm *v = d->vm->priv;

	*a = (struct brk_worker_args){0};
	a->cfg = dd->dmn->cfg;
	a->uid = dd->worker_uid;
	a->gid = dd->worker_gid;
	a->dev = dd->device;
	a->dma = v->dma;
	a->owner = d->id;
	a->bdf = d->bdf;
	a->vm = d->vm->name;
	a->owner_uid = d->owner_uid;
	a->owner_gid = d->owner_gid;
	a->allow_mmap = d->allow_mmap;
	a->max_dma_mappings = d->vm->max_dma_mappings;
	a->max_pinned_bytes = d->vm->max_pinned_bytes;
	a->iommu_pgsize = (uint32_t)brk_container_info(v->container)->min_pgsize;
	a->generation = dd->generation;
	a->protocols = d->protocols;
	a->vmm_listen_fd = dd->vmm_fd;
	a->vfu_listen_fd = dd->vfu_fd;
	a->hooks = &dmn_worker_hooks;
	a->ctx = dd;
}

/* Binds the VMM socket (again, for a restart: same path) and starts a worker for the device. */
static int dmn_start_worker(struct dmn_dev *dd, struct vb_err *err)
{
	struct brk_dev *d = dd->rec;
	struct dmn_vm *v = d->vm->priv;
	struct brk_worker_args a = {0};
	int r;

	r = dmn_worker_uid(dd->dmn, &dd->worker_uid, &dd->worker_gid);
	if (r < 0)
		return vb_errf(err, r, "every uid of the worker uid_range is in use");
	if ((d->protocols & BRK_PROTO_NATIVE) && dd->vmm_fd < 0) {
		r = brk_spawn_vmm_socket(dd->dmn->cfg->runtime_dir, d->vm->name, d->bdf,
					 BRK_PROTO_NATIVE, v->owner_uid, v->owner_gid,
					 d->socket_path, sizeof(d->socket_path), &dd->vmm_fd, err);
		if (r < 0)
			return r;
	}
	if ((d->protocols & BRK_PROTO_VFIO_USER) && dd->vfu_fd < 0) {
		r = brk_spawn_vmm_socket(dd->dmn->cfg->runtime_dir, d->vm->name, d->bdf,
					 BRK_PROTO_VFIO_USER, v->owner_uid, v->owner_gid,
					 d->vfu_socket_path, sizeof(d->vfu_socket_path),
					 &dd->vfu_fd, err);
		if (r < 0)
			return r;
	}
	dmn_worker_args(dd, &a);
	r = dd->dmn->workers->start(dd->dmn->loop, &a, &dd->worker, err);
	if (r < 0)
		return r;
	d->worker_pid = dd->dmn->workers->pid(dd->worker);
	r = dmn_store_worker(dd, err);
	if (r == 0 && (r = brk_daemon__rec_dev(dd)) < 0)
		vb_errf(err, r, "cannot write the state record: %s", strerror(-r));
	return r;
}

/* Revokes what mmap grants map: with decoding off the kernel zaps every mapping of the BARs, in
 * the VMM too, and keeps faults on them failing (SIGBUS); bus mastering off stops the device's
 * own DMA. A grant holder that kept its file can turn them on again, but only on this device,
 * which no other VM can have while that file is open (README, "Mmap grants"). */
static void dmn_revoke(struct dmn_dev *dd)
{
	struct vb_err err = {0};

	if (brk_vfio_dev_stop_decoding(dd->device, &err) < 0)
		brk_warn("%s: cannot turn decoding off: %s", dd->rec->bdf, err.msg);
}

/* The broker has let go of group `nr` after handing out mmap grants of a device in it: if one is
 * still open, the group is too, and nobody else can have it. Say who has it, now and when the
 * next AddDevice of the group gets EBUSY. */
static void dmn_group_released(struct dmn_dev *dd, uint32_t nr, const struct brk_grant_info *gi)
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
static void dmn_dev_release(struct dmn_dev *dd)
{
	struct brk_dev *d = dd->rec;
	struct dmn_vm *v = d->vm->priv;
	struct brk_grant_info grants = {0};

	if (dd->worker)
		dmn_worker_free(dd);
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
		dmn_quiesce_now(dd);
		dmn_revoke(dd);
		grants = *brk_vfio_dev_grants(dd->device);
		dd->resets_before += brk_vfio_dev_resets(dd->device);
		dmn_store_drop(dd->dmn, "dev", d->bdf);
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
			dmn_group_describe(dd->dmn, g, d->vm->name);
		dmn_group_put(dd->dmn, v, g);
		if (users == 1 && grants.issued)
			dmn_group_released(dd, nr, &grants);
	}
	if (v)
		dmn_vm_put(dd->dmn, d->vm);
}

/* Drops the record (and its VM's, when it was the last). Call after dmn_dev_release(). */
static void dmn_dev_forget(struct dmn_dev *dd)
{
	struct brk_daemon *dmn = dd->dmn;
	struct brk_dev *d = dd->rec;
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

/* ---- control operations ------------------------------------------------------------------------
 */

/* Everything AddDevice checks before it changes anything. */
static int dmn_add_check(struct brk_daemon *dmn, const Vb__Ctl__AddDevice *req,
			 struct brk_ctl_call *call, uint32_t *maxmap, uint64_t *maxpin)
{
	const struct brk_config *cfg = dmn->cfg;
	const Vb__Ctl__DeviceLimits *lim = req->limits;
	uint16_t vendor, device;
	struct vb_err err = {0};
	int r;

	if (brk_daemon__read_id(dmn->sys, req->bdf, "vendor", &vendor) < 0 ||
	    brk_daemon__read_id(dmn->sys, req->bdf, "device", &device) < 0) {
		brk_ctl_call_set_message(call, "%s: no such PCI device", req->bdf);
		return -ENODEV;
	}
	r = brk_config_check_device(cfg, req->bdf, vendor, device, &err);
	if (r < 0) {
		brk_ctl_call_set_message(call, "%s", err.msg);
		return r;
	}
	*maxmap = lim && lim->max_dma_mappings ? lim->max_dma_mappings : cfg->max_dma_mappings;
	*maxpin = lim && lim->max_pinned_bytes ? lim->max_pinned_bytes : cfg->max_pinned_bytes;
	if (*maxmap > cfg->max_dma_mappings || *maxpin > cfg->max_pinned_bytes) {
		brk_ctl_call_set_message(call,
					 "limits above the broker's (max_dma_mappings %u, "
					 "max_pinned_bytes %llu)",
					 cfg->max_dma_mappings,
					 (unsigned long long)cfg->max_pinned_bytes);
		return -EINVAL;
	}
	if (req->bind_vfio && !cfg->allow_bind) {
		brk_ctl_call_set_message(
		    call, "bind_vfio: not allowed by %s ([devices] allow_bind)", cfg->path);
		return -EPERM;
	}
	if ((uint32_t)req->protocol > BRK_PROTO_BOTH) {
		brk_ctl_call_set_message(call, "protocol %d: not native, vfio-user or both",
					 (int)req->protocol);
		return -EINVAL;
	}
	return 0;
}

/* A faulted device whose VFIO objects are released can be added again: the old record goes. */
static int dmn_add_replace_stale(struct brk_daemon *dmn, const char *bdf, struct brk_ctl_call *call)
{
	struct brk_dev *old = brk_registry_find(dmn->reg, bdf);
	struct dmn_dev *odd;

	if (!old)
		return 0;
	odd = old->priv;
	/* FAULTED holds nothing any more (dmn_restart() and the reaping released it). */
	if (old->state == BRK_DEV_FAULTED) {
		dmn_dev_forget(odd);
		return 0;
	}
	brk_ctl_call_set_message(call, "%s is already assigned to vm %s (%s)", bdf, old->vm->name,
				 brk_dev_state_name(old->state));
	return -EEXIST;
}

static int dmn_add_vfio(struct brk_daemon *dmn, struct dmn_dev *dd, const Vb__Ctl__AddDevice *req,
			uint32_t maxmap, uint64_t maxpin, struct vb_err *err)
{
	struct brk_dev *d = dd->rec;
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
	r = dmn_group_get(dmn, v, d->iommu_group, err, &dd->grp);
	if (r < 0)
		return r;
	dmn_group_describe(dmn, dd->grp, d->vm->name);
	if (!v->dma) {
		d->vm->max_dma_mappings = maxmap;
		d->vm->max_pinned_bytes = maxpin;
		r = dmn_vm_dma(dmn, d->vm, maxmap, maxpin, err);
		if (r < 0)
			return r;
	}
	r = brk_vfio_dev_open(dd->grp->g, d->bdf, err, &dd->device);
	if (r < 0)
		return r;
	v->live++;
	r = dmn_store_put(dmn, "dev", d->bdf, brk_vfio_dev_fd(dd->device), err);
	if (r < 0)
		return r;
	/* In the record before its first SET_IRQS, which the record journals from then on. */
	r = brk_daemon__rec_dev(dd);
	if (r == 0)
		r = brk_daemon__rec_irq_journal(dd);
	if (r < 0)
		return vb_errf(err, r, "cannot write the state record: %s", strerror(-r));
	/* A clean device for the new owner: whatever the last one left is gone. */
	dmn_reset(dd);
	return 0;
}

static int dmn_add_device(void *ctx, const Vb__Ctl__AddDevice *req, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct vb_err err = {0};
	struct brk_dev *d;
	struct dmn_dev *dd;
	uint32_t maxmap;
	uint64_t maxpin;
	bool vm_created;
	int r;

	r = dmn_add_check(dmn, req, call, &maxmap, &maxpin);
	if (r < 0 || (r = dmn_add_replace_stale(dmn, req->bdf, call)) < 0)
		return r;
	dd = calloc(1, sizeof(*dd));
	if (!dd)
		return -ENOMEM;
	r = brk_registry_add(dmn->reg, req->bdf, req->vm, &d, &vm_created);
	if (r < 0) {
		free(dd);
		brk_ctl_call_set_message(call, "%s",
					 r == -ENOSPC ? "the broker's max_vms or "
							"max_devices is reached"
						      : strerror(-r));
		return r;
	}
	d->priv = dd;
	dd->rec = d;
	dd->dmn = dmn;
	dd->vmm_fd = -1;
	dd->vfu_fd = -1;
	d->protocols = req->protocol != VB__CTL__PROTOCOL__PROTOCOL_DEFAULT
			   ? (uint32_t)req->protocol
		       : dmn->cfg->protocols ? dmn->cfg->protocols
					     : BRK_PROTO_NATIVE;
	d->owner_uid = req->owner_uid;
	d->owner_gid = req->owner_gid;
	d->allow_mmap = req->allow_mmap;
	/* Hot-plug: a device added to a VM that already has one. The same flow, into the VM's
	 * existing container, DMA table and quotas. */
	dd->hotplug = !vm_created;
	r = dmn_add_vfio(dmn, dd, req, maxmap, maxpin, &err);
	if (r == 0)
		r = dmn_start_worker(dd, &err);
	if (r < 0) {
		brk_warn("%s: AddDevice for vm %s failed: %s", req->bdf, req->vm, err.msg);
		dmn_dev_release(dd);
		dmn_dev_forget(dd);
		brk_ctl_call_set_message(call, "%s: %s", req->bdf, err.msg);
		return r;
	}
	dd->add_call = call; /* answered when the worker acknowledges its handoff */
	return 0;
}

static int dmn_remove_device(void *ctx, const Vb__Ctl__RemoveDevice *req, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct brk_dev *d = brk_registry_find(dmn->reg, req->bdf);
	struct dmn_dev *dd;
	uint32_t timeout;

	if (!d) {
		brk_ctl_call_set_message(call, "%s is not assigned", req->bdf);
		return -ENOENT;
	}
	dd = d->priv;
	if (d->state == BRK_DEV_REMOVING) {
		brk_ctl_call_set_message(call, "%s is already being removed", req->bdf);
		return -EALREADY;
	}
	brk_dev_set_state(d, BRK_DEV_REMOVING);
	brk_daemon__rec_dev(dd);
	dd->remove_call = call;
	dd->vmm_acknowledged = false;
	if (!dd->worker) {
		dmn_finish_removal(dd); /* faulted and released */
		return 0;
	}
	timeout = req->timeout_ms ? req->timeout_ms : dmn->cfg->remove_timeout_ms;
	/* Ask the VMM only when there is one and the caller did not say otherwise. */
	if (req->force || !dmn->workers->vmm_connected(dd->worker) ||
	    dmn->workers->request_removal(dd->worker, timeout) < 0)
		dmn->workers->kill(dd->worker);
	return 0;
}

const struct brk_ctl_ops brk_daemon_ctl_ops = {
    .add_device = dmn_add_device,
    .remove_device = dmn_remove_device,
    .list_devices = brk_daemon__list_devices,
    .device_status = brk_daemon__device_status,
    .metrics = brk_daemon__metrics,
};

/* log.c's resolver: a line that starts with a device's address gets that device's VM and worker
 * as journal fields. */
static void dmn_log_resolve(void *ctx, const char *bdf, struct brk_log_about *about)
{
	struct brk_daemon *dmn = ctx;
	struct brk_dev *d = brk_registry_find(dmn->reg, bdf);

	if (!d)
		return;
	about->vm = d->vm ? d->vm->name : NULL;
	about->worker_pid = d->worker_pid;
}

int brk_daemon_new(uv_loop_t *loop, const struct brk_config *cfg, int listen_fd,
		   const struct brk_daemon_env *env, struct brk_daemon **ret)
{
	struct brk_ctl_cfg ccfg = {.admin_uid = cfg->admin_uid,
				   .admin_gid = cfg->admin_gid,
				   .admin_gid_set = cfg->admin_gid_set,
				   .ops = &brk_daemon_ctl_ops};
	struct brk_daemon *dmn;
	int r;

	dmn = calloc(1, sizeof(*dmn));
	if (!dmn)
		return -ENOMEM;
	dmn->loop = loop;
	dmn->cfg = cfg;
	dmn->sys = env && env->sys ? env->sys : &brk_sys_real;
	dmn->workers = env && env->workers ? env->workers : &brk_worker_ops_real;
	dmn->store = env ? env->store : NULL;
	r = brk_registry_new(cfg->max_vms, cfg->max_devices, &dmn->reg);
	if (r < 0) {
		free(dmn);
		return r;
	}
	ccfg.ctx = dmn;
	r = brk_ctl_new(loop, listen_fd, &ccfg, &dmn->ctl);
	if (r < 0) {
		brk_registry_free(dmn->reg);
		free(dmn);
		return r;
	}
	brk_log_set_resolver(dmn_log_resolve, dmn);
	*ret = dmn;
	return 0;
}

void brk_daemon_free(struct brk_daemon *dmn)
{
	struct brk_dev *d;

	if (!dmn)
		return;
	/* Stop taking requests first, then end every worker and give everything back. */
	brk_ctl_free(dmn->ctl);
	dmn->ctl = NULL;
	while ((d = brk_registry_first(dmn->reg))) {
		struct dmn_dev *dd = d->priv;
		if (dd->worker) {
			dmn_worker_free(dd);
			dmn_reset(dd);
		}
		dmn_dev_release(dd);
		dmn_dev_forget(dd);
	}
	brk_log_set_resolver(NULL, NULL);
	brk_registry_free(dmn->reg);
	if (dmn->rec) {
		/* Everything is released: nothing is left for a next broker to adopt. */
		dmn_store_drop(dmn, "state", NULL);
		brk_record_free(dmn->rec);
	}
	free(dmn);
}

/* ---- for daemon_adopt.c -----------------------------------------------------------------------
 */

void brk_daemon__dev_release(struct dmn_dev *dd)
{
	dmn_dev_release(dd);
}

void brk_daemon__dev_forget(struct dmn_dev *dd)
{
	dmn_dev_forget(dd);
}

int brk_daemon__worker_adopt(struct dmn_dev *dd, pid_t pid, int pidfd, int chan, struct vb_err *err)
{
	struct brk_worker_args a;
	int r;

	if (!dd->dmn->workers->adopt)
		return vb_errf(err, -EOPNOTSUPP, "workers cannot be adopted here");
	dmn_worker_args(dd, &a);
	a.vmm_listen_fd = a.vfu_listen_fd = -1;
	r = dd->dmn->workers->adopt(dd->dmn->loop, &a, pid, pidfd, chan, &dd->worker, err);
	if (r < 0)
		return r;
	dd->rec->worker_pid = pid;
	return dmn_store_worker(dd, err);
}

int brk_daemon__vm_dma(struct brk_daemon *dmn, struct brk_vm *vm, struct vb_err *err)
{
	return dmn_vm_dma(dmn, vm, vm->max_dma_mappings, vm->max_pinned_bytes, err);
}

int brk_daemon__store_put(struct brk_daemon *dmn, const char *kind, const char *id, int fd,
			  struct vb_err *err)
{
	return dmn_store_put(dmn, kind, id, fd, err);
}
