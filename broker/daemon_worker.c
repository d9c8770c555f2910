/*
 * daemon_worker: an assignment's worker as the daemon sees it. Starts it (its VMM sockets, a uid
 * from the configured range) or adopts it through the brk_worker_ops table, and turns what it
 * reports (ready, VMM connected or gone, removal acknowledged, fault, exit) into the device's
 * state transitions, the replies to the AddDevice and RemoveDevice waiting on it, and events.
 * Responsible for the restart policy and for doing at a worker's exit only what the state it
 * left the device in says. Trusts worker.c to have checked everything the worker process sent,
 * and to report every exit it did not cause as a fault first.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "daemon_priv.h"
#include "log.h"
#include "pool.h"
#include "spawn.h"

/* The worker's channel and pidfd: with them the next broker keeps the worker. */
static int dmn_store_worker(struct dmn_assignment *dd, struct vb_err *err)
{
	struct brk_daemon *dmn = dd->dmn;
	int chan = -1, pidfd = -1, r;

	if (!dmn->store || !dmn->workers->fds)
		return 0;
	dmn->workers->fds(dd->worker, &chan, &pidfd);
	r = brk_daemon__store_put(dmn, "wch", dd->rec->bdf, chan, err);
	if (r == 0)
		r = brk_daemon__store_put(dmn, "wpid", dd->rec->bdf, pidfd, err);
	return r;
}

void brk_daemon__worker_free(struct dmn_assignment *dd)
{
	brk_daemon__store_drop(dd->dmn, "wpid", dd->rec->bdf);
	brk_daemon__store_drop(dd->dmn, "wch", dd->rec->bdf);
	dd->dmn->workers->free(dd->worker);
	dd->worker = NULL;
	dd->rec->worker_pid = 0;
}

bool brk_daemon__uid_used(void *ctx, uid_t uid)
{
	struct brk_daemon *dmn = ctx;

	for (struct brk_dev_rec *d = brk_registry_first(dmn->reg); d; d = d->next) {
		struct dmn_assignment *dd = d->priv;

		if (dd && dd->worker && dd->worker_uid == uid)
			return true;
	}
	return false;
}

static Vb__Ctl__EventKind dmn_fault_event(enum brk_worker_fault k)
{
	return k == BRK_WORKER_HUNG ? VB__CTL__EVENT_KIND__EVENT_WORKER_HUNG
				    : VB__CTL__EVENT_KIND__EVENT_WORKER_CRASHED;
}

static void dmn_reply_add(struct dmn_assignment *dd)
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
	struct dmn_assignment *dd = ctx;
	struct brk_dev_rec *d = dd->rec;
	char steps[sizeof(dd->add_steps.text) + 48] = "";
	bool answered;
	double ms = 0;

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
	vb_steps_mark(&dd->add_steps, "handoff");
	brk_daemon__rec_dev(dd);
	vb_steps_mark(&dd->add_steps, "record_ready");
	/* An AddDevice waiting for this worker is answered before anything is logged: a log line
	 * is a write to the journal's socket, and a hot-plug's caller waits for nothing else. */
	answered = !dd->adopted && dd->add_call;
	if (answered) {
		ms = vb_steps_total_ms(&dd->add_steps);
		dmn_reply_add(dd);
		dd->add_answered_ns = vb_steps_now_ns();
	}
	/* With an AddDevice's steps, so that an operator sees where a slow hot-plug's time went
	 * (bench/README.md, P4, reads the same line). */
	if (answered)
		snprintf(steps, sizeof(steps), "; AddDevice answered after %.2f ms: %s", ms,
			 dd->add_steps.text);
	brk_info("%s: worker %d ready (vm %s, socket %s%s%s%s%s)%s", d->bdf, (int)d->worker_pid,
		 d->vm->name, d->socket_path,
		 d->socket_path[0] && d->vfu_socket_path[0] ? ", " : "",
		 d->vfu_socket_path[0] ? "vfio-user " : "", d->vfu_socket_path,
		 dd->adopted	  ? ", adopted from the last broker"
		 : dd->generation ? ", restarted"
		 : dd->hotplug	  ? ", hot-plugged into the running VM"
				  : "",
		 steps);
	if (dd->adopted) {
		dd->adopted = false; /* the same worker as before: nothing to announce */
	} else if (answered) {
		dd->add_steps.start_ns = 0;
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
	struct dmn_assignment *dd = ctx;
	struct brk_dev_rec *d = dd->rec;

	if (d->state == BRK_DEV_READY || d->state == BRK_DEV_CONNECTED) {
		brk_dev_set_state(d, connected ? BRK_DEV_CONNECTED : BRK_DEV_READY);
		brk_daemon__rec_dev(dd);
	}
	if (connected && dd->add_answered_ns)
		brk_info("%s: VMM pid %u uid %u connected, the first %.2f ms after AddDevice's "
			 "answer",
			 d->bdf, pid, uid, (double)(vb_steps_now_ns() - dd->add_answered_ns) / 1e6);
	else
		brk_info("%s: VMM pid %u uid %u %s", d->bdf, pid, uid,
			 connected ? "connected" : "disconnected");
	dd->add_answered_ns = 0;
	/* A hot-plug is done once its VMM is in: the pool's refill no longer competes with it. */
	if (connected)
		brk_pool_kick(dd->dmn->pool);
	if (!connected) {
		/* The VMM's memory and irqfds mean nothing without it; a worker that forgot to
		 * unmap must not keep its pages pinned. */
		brk_daemon__quiesce(dd);
	}
	brk_ctl_event(dd->dmn->ctl,
		      connected ? VB__CTL__EVENT_KIND__EVENT_VMM_CONNECTED
				: VB__CTL__EVENT_KIND__EVENT_VMM_DISCONNECTED,
		      d->bdf, d->vm->name, "VMM pid %u uid %u", pid, uid);
}

static void dmn_on_removal_done(void *ctx, bool acknowledged)
{
	struct dmn_assignment *dd = ctx;

	dd->vmm_acknowledged = acknowledged;
	if (!acknowledged)
		brk_notice("%s: the VMM did not acknowledge the removal: forcing it", dd->rec->bdf);
	dd->dmn->workers->kill(dd->worker);
}

static void dmn_on_fault(void *ctx, enum brk_worker_fault kind, const char *reason)
{
	struct dmn_assignment *dd = ctx;
	struct brk_dev_rec *d = dd->rec;
	bool adding;

	brk_err("%s: worker %d %s: %s", d->bdf, (int)d->worker_pid,
		kind == BRK_WORKER_HUNG ? "hung" : "faulted", reason);
	brk_dev_set_fault(d, "%s", reason);
	brk_daemon__quiesce(dd);
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

void brk_daemon__finish_removal(struct dmn_assignment *dd)
{
	Vb__Ctl__RemoveDeviceReply rep = VB__CTL__REMOVE_DEVICE_REPLY__INIT;
	struct brk_ctl_call *call = dd->remove_call;
	struct brk_daemon *dmn = dd->dmn;
	char bdf[VB_BDF_LEN], vm[BRK_VM_NAME_MAX + 1], held[sizeof(dd->held)];

	snprintf(bdf, sizeof(bdf), "%s", dd->rec->bdf);
	snprintf(vm, sizeof(vm), "%s", dd->rec->vm->name);
	rep.vmm_acknowledged = dd->vmm_acknowledged;
	brk_daemon__dev_release(dd);
	snprintf(held, sizeof(held), "%s", dd->held);
	brk_daemon__dev_forget(dd);
	dmn->removes_total++;
	brk_info("%s: removed from vm %s", bdf, vm);
	if (call)
		brk_ctl_call_reply(call, &rep.base);
	brk_ctl_event(dmn->ctl, VB__CTL__EVENT_KIND__EVENT_DEVICE_REMOVED, bdf, vm, "%s%s%s",
		      rep.vmm_acknowledged ? "acknowledged by the VMM" : "forced",
		      held[0] ? "; " : "", held);
}

/* The restart policy, for a worker that had come up and then failed (FAILING). */
static void dmn_restart(struct dmn_assignment *dd)
{
	struct brk_dev_rec *d = dd->rec;
	const struct brk_config *cfg = dd->dmn->cfg;
	struct vb_err err = {0};

	if (cfg->restart == BRK_RESTART_ON_FAILURE && d->restarts < cfg->restart_max) {
		d->restarts++;
		dd->dmn->restarts_total++;
		dd->generation++;
		brk_dev_set_state(d, BRK_DEV_STARTING);
		if (brk_daemon__worker_start(dd, &err) == 0)
			return;
		brk_err("%s: restart failed: %s", d->bdf, err.msg);
		brk_dev_set_fault(d, "restart failed: %s", err.msg);
	} else if (cfg->restart == BRK_RESTART_ON_FAILURE) {
		brk_err("%s: %u restarts used up: the device stays faulted", d->bdf, d->restarts);
	}
	/* Faulted for good: give the VFIO objects back; the record stays for DeviceStatus until
	 * RemoveDevice or a new AddDevice. */
	brk_daemon__dev_release(dd);
	brk_dev_set_state(d, BRK_DEV_FAULTED);
	brk_daemon__rec_dev(dd);
}

/* The worker has been reaped: what follows depends only on the state it left the device in. */
static void dmn_on_exited(void *ctx, int code, int status)
{
	struct dmn_assignment *dd = ctx;
	struct brk_dev_rec *d = dd->rec;

	brk_daemon__worker_free(dd);
	brk_daemon__reset(dd);
	switch (d->state) {
	case BRK_DEV_REMOVING:
		brk_daemon__finish_removal(dd);
		break;
	case BRK_DEV_ABANDONED:
		brk_daemon__dev_release(dd);
		brk_daemon__dev_forget(dd);
		break;
	case BRK_DEV_FAILING:
		dmn_restart(dd);
		break;
	case BRK_DEV_FAILED_START:
		/* A restarted worker that never came up is not restarted again: the next one
		 * would fail the same way. */
		brk_daemon__dev_release(dd);
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

void brk_daemon__worker_lost(struct dmn_assignment *dd, pid_t pid, const char *reason)
{
	/* It had come up and served (the record says so): a crash, not a failed start. */
	dd->rec->worker_pid = pid;
	brk_dev_set_state(dd->rec, BRK_DEV_READY);
	dmn_on_fault(dd, BRK_WORKER_CRASHED, reason);
	dmn_on_exited(dd, 0, -1);
}

static const struct brk_worker_hooks dmn_worker_hooks = {
    .ready = dmn_on_ready,
    .vmm_state = dmn_on_vmm_state,
    .removal_done = dmn_on_removal_done,
    .fault = dmn_on_fault,
    .exited = dmn_on_exited,
};

/* What the device's worker is started (or adopted) with. */
static void dmn_worker_args(struct dmn_assignment *dd, struct brk_worker_args *a)
{
	struct brk_dev_rec *d = dd->rec;
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
int brk_daemon__worker_start(struct dmn_assignment *dd, struct vb_err *err)
{
	struct brk_dev_rec *d = dd->rec;
	struct dmn_vm *v = d->vm->priv;
	struct brk_worker_args a = {0};
	struct brk_pool_proc pre;
	bool pooled;
	int r;

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
	vb_steps_mark(&dd->add_steps, "sockets");
	/* A pre-started worker if one is ready: its sandbox exists and it has exec'd; its uid
	 * was reserved for it in the pool and becomes the device's. */
	pooled = brk_pool_take(dd->dmn->pool, &pre) == 0;
	if (pooled) {
		dd->worker_uid = pre.uid;
		dd->worker_gid = pre.gid;
	} else {
		/* A uid no device's worker and no pooled one holds. */
		r = brk_pool_pick_uid(dd->dmn->pool, dd->dmn->cfg, brk_daemon__uid_used, dd->dmn,
				      &dd->worker_uid, &dd->worker_gid);
		if (r < 0)
			return vb_errf(err, r, "every uid of the worker uid_range is in use");
	}
	dmn_worker_args(dd, &a);
	a.pre = pooled ? &pre : NULL;
	r = dd->dmn->workers->start(dd->dmn->loop, &a, &dd->worker, err);
	if (r < 0)
		return r;
	d->worker_pid = dd->dmn->workers->pid(dd->worker);
	if (pooled)
		brk_debug("%s: pre-started worker %d (uid %u) takes the device", d->bdf,
			  (int)d->worker_pid, (unsigned)dd->worker_uid);
	vb_steps_mark(&dd->add_steps, pooled ? "worker_pooled" : "worker_spawned");
	r = dmn_store_worker(dd, err);
	if (r == 0 && (r = brk_daemon__rec_dev(dd)) < 0)
		vb_errf(err, r, "cannot write the state record: %s", strerror(-r));
	vb_steps_mark(&dd->add_steps, "record_worker");
	return r;
}

int brk_daemon__worker_adopt(struct dmn_assignment *dd, pid_t pid, int pidfd, int chan,
			     struct vb_err *err)
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
