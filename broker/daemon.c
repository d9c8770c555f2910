/*
 * daemon: the control requests that change assignments (AddDevice, RemoveDevice) and the
 * daemon's own life (new, free). Responsible for checking an AddDevice against the configuration
 * before anything changes, and for leaving nothing behind when one of its steps fails; the steps
 * themselves are daemon_vfio.c's (VFIO objects) and daemon_worker.c's (the worker and what it
 * reports). Trusts control.c to have checked who may send requests, control_req.c their shapes.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "daemon_priv.h"
#include "log.h"
#include "pool.h"
#include "record.h"

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
	struct brk_dev_rec *old = brk_registry_find(dmn->reg, bdf);
	struct dmn_assignment *odd;

	if (!old)
		return 0;
	odd = old->priv;
	/* FAULTED holds nothing any more (dmn_restart() and the reaping released it). */
	if (old->state == BRK_DEV_FAULTED) {
		brk_daemon__dev_forget(odd);
		return 0;
	}
	brk_ctl_call_set_message(call, "%s is already assigned to vm %s (%s)", bdf, old->vm->name,
				 brk_dev_state_name(old->state));
	return -EEXIST;
}

static int dmn_add_device(void *ctx, const Vb__Ctl__AddDevice *req, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct vb_err err = {0};
	struct brk_dev_rec *d;
	struct dmn_assignment *dd;
	struct vb_steps steps;
	uint32_t maxmap;
	uint64_t maxpin;
	bool vm_created;
	int r;

	vb_steps_begin(&steps);
	r = dmn_add_check(dmn, req, call, &maxmap, &maxpin);
	if (r < 0 || (r = dmn_add_replace_stale(dmn, req->bdf, call)) < 0)
		return r;
	dd = calloc(1, sizeof(*dd));
	if (!dd)
		return -ENOMEM;
	vb_steps_mark(&steps, "check");
	dd->add_steps = steps;
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
	r = brk_daemon__vfio_open(dmn, dd, req, maxmap, maxpin, &err);
	if (r == 0)
		r = brk_daemon__worker_start(dd, &err);
	if (r < 0) {
		brk_warn("%s: AddDevice for vm %s failed: %s", req->bdf, req->vm, err.msg);
		brk_daemon__dev_release(dd);
		brk_daemon__dev_forget(dd);
		brk_ctl_call_set_message(call, "%s: %s", req->bdf, err.msg);
		return r;
	}
	dd->add_call = call; /* answered when the worker acknowledges its handoff */
	return 0;
}

static int dmn_remove_device(void *ctx, const Vb__Ctl__RemoveDevice *req, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct brk_dev_rec *d = brk_registry_find(dmn->reg, req->bdf);
	struct dmn_assignment *dd;
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
		brk_daemon__finish_removal(dd); /* faulted and released */
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
	struct brk_dev_rec *d = brk_registry_find(dmn->reg, bdf);

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
	/* Pre-started workers are real processes: not beside fake ones (tests). */
	if (dmn->workers == &brk_worker_ops_real && cfg->prestart) {
		r = brk_pool_new(loop, cfg, brk_daemon__uid_used, dmn, &dmn->pool);
		if (r < 0) {
			brk_ctl_free(dmn->ctl);
			brk_registry_free(dmn->reg);
			free(dmn);
			return r;
		}
	}
	brk_log_set_resolver(dmn_log_resolve, dmn);
	*ret = dmn;
	return 0;
}

struct brk_ctl *brk_daemon_ctl(struct brk_daemon *dmn)
{
	return dmn->ctl;
}

void brk_daemon_prestart_drain(struct brk_daemon *dmn)
{
	brk_pool_drain(dmn->pool);
}

void brk_daemon_prestart_resume(struct brk_daemon *dmn)
{
	brk_pool_resume(dmn->pool);
}

void brk_daemon_free(struct brk_daemon *dmn)
{
	struct brk_dev_rec *d;

	if (!dmn)
		return;
	/* Stop taking requests first, then end every worker and give everything back. */
	brk_ctl_free(dmn->ctl);
	dmn->ctl = NULL;
	brk_pool_free(dmn->pool);
	dmn->pool = NULL;
	while ((d = brk_registry_first(dmn->reg))) {
		struct dmn_assignment *dd = d->priv;

		if (dd->worker) {
			brk_daemon__worker_free(dd);
			brk_daemon__reset(dd);
		}
		brk_daemon__dev_release(dd);
		brk_daemon__dev_forget(dd);
	}
	brk_log_set_resolver(NULL, NULL);
	brk_registry_free(dmn->reg);
	if (dmn->rec) {
		/* Everything is released: nothing is left for a next broker to adopt. */
		brk_daemon__store_drop(dmn, "state", NULL);
		brk_record_free(dmn->rec);
	}
	free(dmn->list_buf);
	free(dmn);
}
