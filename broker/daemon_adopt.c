/*
 * daemon_adopt: what the last broker left behind (systemd's fd store after a restart or crash,
 * or a re-exec's handover), taken over at start or, when it cannot be trusted, quiesced.
 *
 * Trusts nothing it is passed: a name says only what an fd claims to be. Every fd is checked
 * against the kernel (the same character device as /dev/vfio/vfio or /dev/vfio/<N>, a VFIO
 * device inode, a pidfd of a live process) before anything is done to it; an fd that is not
 * what its name says is closed without a single ioctl.
 *
 * Quiescing (no record, or one that does not load) does what a worker crash does, for every
 * device at once: workers ended through their pidfds and channels, interrupts off, DMA unmapped,
 * devices reset, groups detached and every fd closed, so that each group can be opened again.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "irq.h"

#include "base.h"
#include "daemon.h"
#include "daemon_priv.h"
#include "fdstore.h"
#include "log.h"
#include "record.h"

/* How long quiescing waits for the killed workers to exit before it resets their devices
 * anyway: only a bound for a machine so loaded that SIGKILL takes that long. */
#define ADOPT_KILL_WAIT_MS 60000

static uint64_t adopt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool adopt_kind(const char *name, const char *kind)
{
	size_t n = strlen(kind);

	return strncmp(name, kind, n) == 0 && name[n] == '.';
}

/* Whether `fd` is the VFIO object `what` names: "anon_inode:[vfio-device]", "vfio" for the
 * container node, or a group number. Anything else, an error included, is "no". */
static bool adopt_fd_is(const struct brk_sys *sys, int fd, const char *what)
{
	char path[256];
	int r;

	if (!sys->fd_is)
		return false;
	if (strncmp(what, "anon_inode:", 11) == 0)
		r = snprintf(path, sizeof(path), "%s", what) < (int)sizeof(path) ? 0
										 : -ENAMETOOLONG;
	else
		r = brk_sys_path(sys, path, sizeof(path), "/dev/vfio/%s", what);
	return r == 0 && sys->fd_is(sys->ctx, fd, path) == 1;
}

/* Ends the workers of every pidfd in the set: SIGKILL, then waits (bounded) until each has
 * exited, so that no worker touches its device while it is reset. Their channels are closed
 * too: a worker that is not killed (a stale pidfd) still ends when its channel hangs up. */
static unsigned adopt_end_workers(struct brk_daemon *dmn, struct brk_fdstore_set *set)
{
	struct pollfd *pf = calloc(set->n ? set->n : 1, sizeof(*pf));
	unsigned killed = 0, left;
	uint64_t until = adopt_now_ms() + ADOPT_KILL_WAIT_MS;

	for (size_t i = 0; i < set->n; i++) {
		struct brk_fdstore_entry *e = &set->e[i];

		if (e->fd < 0)
			continue;
		if (adopt_kind(e->name, "wch")) {
			close(TAKE_FD(e->fd));
			continue;
		}
		if (!adopt_kind(e->name, "wpid") || !dmn->sys->pidfd_pid ||
		    dmn->sys->pidfd_pid(dmn->sys->ctx, e->fd) <= 0)
			continue;
		if (syscall(SYS_pidfd_send_signal, e->fd, SIGKILL, NULL, 0) < 0)
			continue;
		if (pf)
			pf[killed] = (struct pollfd){.fd = e->fd, .events = POLLIN};
		killed++;
	}
	/* A pidfd polls readable once its process has exited. */
	for (left = pf ? killed : 0; left > 0;) {
		int64_t wait = (int64_t)(until - adopt_now_ms());

		if (wait <= 0 || poll(pf, killed, (int)wait) <= 0) {
			brk_warn(
			    "%u workers of the last broker did not exit within %d s of SIGKILL",
			    left, ADOPT_KILL_WAIT_MS / 1000);
			break;
		}
		left = 0;
		for (unsigned i = 0; i < killed; i++) {
			if (pf[i].revents)
				pf[i].fd = -1; /* poll ignores it from now on */
			else if (pf[i].fd >= 0)
				left++;
		}
	}
	free(pf);
	return killed;
}

/* Interrupts off on every index, then a reset: what a worker crash does to its device. */
static void adopt_quiesce_device(struct brk_daemon *dmn, const char *name, int fd)
{
	struct vfio_irq_set off = {.argsz = sizeof(off),
				   .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER};
	int r;

	for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		off.index = i;
		dmn->sys->ioctl(dmn->sys->ctx, fd, VFIO_DEVICE_SET_IRQS, &off);
	}
	r = dmn->sys->ioctl(dmn->sys->ctx, fd, VFIO_DEVICE_RESET, NULL);
	if (r < 0 && r != -ENOTTY)
		brk_log_errno(LOG_WARNING, r, "%s: reset at quiesce", name);
}

static void adopt_quiesce_all(struct brk_daemon *dmn, struct brk_fdstore_set *set, const char *why);

/* After a trusted adoption: whatever is left in the set names nothing in the record. */
static void adopt_leftovers(struct brk_daemon *dmn, struct brk_fdstore_set *set)
{
	uint32_t quiesced = dmn->adopt.quiesced;
	size_t left = 0;

	for (size_t i = 0; i < set->n; i++)
		left += set->e[i].fd >= 0;
	if (!left)
		return;
	brk_warn("%zu fds of the last broker that its record does not name: closing them", left);
	adopt_quiesce_all(dmn, set, NULL);
	/* Counted once, as the record's devices they belonged to (adopt_drop). */
	dmn->adopt.quiesced = quiesced;
}

/*
 * Quiesces everything in the set (the untrusted path): workers first, then devices, then the
 * DMA of every container while its groups are still attached, then the groups; whatever is
 * left (pidfds, the record, anything else) is closed last.
 */
static void adopt_quiesce_all(struct brk_daemon *dmn, struct brk_fdstore_set *set, const char *why)
{
	struct vfio_iommu_type1_dma_unmap all = {.argsz = sizeof(all),
						 .flags = VFIO_DMA_UNMAP_FLAG_ALL};
	unsigned devs = 0, groups = 0, ctrs = 0, stale = 0, workers;

	workers = adopt_end_workers(dmn, set);
	for (size_t i = 0; i < set->n; i++) {
		struct brk_fdstore_entry *e = &set->e[i];

		if (e->fd < 0 || !adopt_kind(e->name, "dev"))
			continue;
		if (adopt_fd_is(dmn->sys, e->fd, "anon_inode:[vfio-device]")) {
			adopt_quiesce_device(dmn, e->name, e->fd);
			devs++;
		} else {
			stale++;
		}
		close(TAKE_FD(e->fd));
	}
	for (size_t i = 0; i < set->n; i++) {
		struct brk_fdstore_entry *e = &set->e[i];

		if (e->fd < 0 || !adopt_kind(e->name, "ctr"))
			continue;
		if (adopt_fd_is(dmn->sys, e->fd, "vfio")) {
			/* Unpins everything at once; closing the container would too, but only
			 * once the last group is gone, which a VMM holding a device file delays. */
			dmn->sys->ioctl(dmn->sys->ctx, e->fd, VFIO_IOMMU_UNMAP_DMA, &all);
			ctrs++;
		} else {
			stale++;
			close(TAKE_FD(e->fd));
		}
	}
	for (size_t i = 0; i < set->n; i++) {
		struct brk_fdstore_entry *e = &set->e[i];
		unsigned nr;
		char end;

		if (e->fd < 0 || !adopt_kind(e->name, "grp"))
			continue;
		if (sscanf(e->name, "grp.%u%c", &nr, &end) == 1 &&
		    adopt_fd_is(dmn->sys, e->fd, e->name + 4)) {
			dmn->sys->ioctl(dmn->sys->ctx, e->fd, VFIO_GROUP_UNSET_CONTAINER, NULL);
			groups++;
		} else {
			stale++;
		}
		close(TAKE_FD(e->fd));
	}
	/* The containers once their groups are gone; then the rest (pidfds, the record). */
	for (size_t i = 0; i < set->n; i++)
		if (set->e[i].fd >= 0 && adopt_kind(set->e[i].name, "ctr"))
			close(TAKE_FD(set->e[i].fd));
	for (size_t i = 0; i < set->n; i++)
		if (set->e[i].fd >= 0)
			close(TAKE_FD(set->e[i].fd));
	dmn->adopt.quiesced = devs;
	if (why)
		snprintf(dmn->adopt.untrusted, sizeof(dmn->adopt.untrusted), "%s", why);
	brk_err("%s%s: quiesced %u devices (interrupts off, DMA unmapped, reset), ended %u "
		"workers, released %u groups and %u containers%s",
		why ? "state of the last broker not adopted: " : "fds no record entry names",
		why ? why : "", devs, workers, groups, ctrs,
		stale ? "; fds that were not what their names said closed untouched" : "");
}

/* ---- a trusted record: take everything over ------------------------------------------------ */

/* The fd named kind.id in the set, taken out of it; -ENOENT when absent. */
static int adopt_take(struct brk_fdstore_set *set, const char *kind, const char *id)
{
	char name[BRK_FDSTORE_NAME_MAX + 1];

	if (brk_fdstore_name(name, sizeof(name), kind, id) < 0)
		return -EINVAL;
	return brk_fdstore_set_take(set, name);
}

/* A VM of the record with its container, or NULL (reported) when the container is not there. */
static struct brk_vm *adopt_vm(struct brk_daemon *dmn, struct brk_fdstore_set *set,
			       const struct brk_rec_vm *rv, const char *bdf, struct brk_dev_rec *d)
{
	struct brk_vm *vm = d->vm;
	struct dmn_vm *v;
	struct vb_err err = {0};
	int fd, r;

	if (vm->priv)
		return vm;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	fd = adopt_take(set, "ctr", rv->name);
	r = fd < 0 ? vb_errf(&err, fd, "no container fd") : 0;
	if (r == 0)
		r = brk_container_adopt(dmn->sys, fd, true, &err, &v->container);
	if (r == 0)
		r = brk_daemon__store_put(dmn, "ctr", rv->name, fd, &err);
	if (r < 0) {
		if (fd >= 0 && !v->container)
			close(fd);
		brk_container_unref(v->container);
		free(v);
		brk_err("%s: vm %s cannot be adopted: %s", bdf, rv->name, err.msg);
		return NULL;
	}
	v->owner_uid = rv->owner_uid;
	v->owner_gid = rv->owner_gid;
	vm->max_dma_mappings = rv->max_mappings;
	vm->max_pinned_bytes = rv->max_pinned_bytes;
	vm->priv = v;
	return vm;
}

/* The device's group, when the VM has not adopted it with another device: its fd from the set
 * (brk_daemon__group_get's open). */
static int adopt_group_open(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr, void *ctx,
			    struct brk_group **ret, struct vb_err *err)
{
	char id[12];
	int fd, r;

	snprintf(id, sizeof(id), "%u", nr);
	fd = adopt_take(ctx, "grp", id);
	if (fd < 0)
		return vb_errf(err, fd, "no fd of IOMMU group %u", nr);
	r = brk_group_adopt(dmn->sys, nr, fd, v->container, err, ret);
	if (r < 0)
		close(fd);
	return r;
}

/* Its interrupts as recorded, now that the device handle is back (no ioctl). */
static int adopt_irqs(struct dmn_assignment *dd, const struct brk_rec_dev *rd, struct vb_err *err)
{
	struct brk_irqs *irqs = brk_vfio_dev_irqs(dd->device);
	int r;

	for (uint32_t i = 0; i < BRK_REC_MAX_IRQS; i++) {
		const struct brk_rec_irq *ri = rd->irq[i];

		if (!ri || !ri->count || !ri->enabled)
			continue;
		r = brk_irqs_restore(irqs, i, ri->count, ri->enabled, ri->unmask_fd, ri->trig, err);
		if (r < 0)
			return r;
	}
	return brk_daemon__rec_irq_journal(dd);
}

/* Whether the current configuration still allows the device. */
static int adopt_allowed(struct brk_daemon *dmn, const char *bdf, struct vb_err *err)
{
	uint16_t vendor, device;

	if (brk_daemon__read_id(dmn->sys, bdf, "vendor", &vendor) < 0 ||
	    brk_daemon__read_id(dmn->sys, bdf, "device", &device) < 0)
		return vb_errf(err, -ENODEV, "no such PCI device any more");
	return brk_config_check_device(dmn->cfg, bdf, vendor, device, err);
}

/* One device of a trusted record: its VM, group and handle, each checked against the kernel.
 * The worker comes later (adopt_worker), once every VM's DMA table is back. */
static int adopt_device(struct brk_daemon *dmn, struct brk_fdstore_set *set,
			const struct brk_rec_state *st, const struct brk_rec_dev *rd,
			struct dmn_assignment *dd, struct vb_err *err)
{
	struct brk_dev_rec *d = dd->rec;
	struct dmn_vm *v;
	int fd, r;

	if (!adopt_vm(dmn, set, brk_rec_state_vm(st, rd->vm), rd->bdf, d))
		return vb_errf(err, -EBADF, "its VM's container cannot be adopted");
	v = d->vm->priv;
	r = brk_daemon__group_get(dmn, v, rd->iommu_group, adopt_group_open, set, &dd->grp, err);
	if (r < 0)
		return r;
	/* Another VM's AddDevice of a device in this group is refused naming its holder, as
	 * before the restart (the name is not in the record: it is rebuilt from the devices). */
	brk_daemon__group_describe(dmn, dd->grp, rd->vm);
	fd = adopt_take(set, "dev", rd->bdf);
	if (fd < 0)
		return vb_errf(err, fd, "no device fd");
	r = brk_vfio_dev_adopt(dd->grp->g, rd->bdf, fd, err, &dd->device);
	if (r < 0) {
		close(fd);
		return r;
	}
	v->live++;
	return brk_daemon__store_put(dmn, "dev", rd->bdf, fd, err);
}

/* A worker not taken over: killed through its pidfd (when that names a live process) and waited
 * for, so that nobody touches the device while it is reset; its channel hung up. */
static void adopt_end_worker(struct brk_daemon *dmn, struct brk_fdstore_set *set, const char *bdf)
{
	int pidfd = adopt_take(set, "wpid", bdf), chan = adopt_take(set, "wch", bdf);

	if (chan >= 0)
		close(chan);
	if (pidfd < 0)
		return;
	if (dmn->sys->pidfd_pid && dmn->sys->pidfd_pid(dmn->sys->ctx, pidfd) > 0 &&
	    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};

		if (poll(&p, 1, ADOPT_KILL_WAIT_MS) <= 0)
			brk_warn("%s: its worker did not exit within %d s of SIGKILL", bdf,
				 ADOPT_KILL_WAIT_MS / 1000);
	}
	close(pidfd);
}

/* Interrupts off on every index, DMA of the device unmapped, reset, everything released and
 * forgotten: a device of the record that cannot be adopted, or is no longer allowed. */
static void adopt_drop(struct dmn_assignment *dd, struct brk_fdstore_set *set, const char *why)
{
	struct brk_daemon *dmn = dd->dmn;
	char bdf[VB_BDF_LEN];

	snprintf(bdf, sizeof(bdf), "%s", dd->rec->bdf);
	if (dd->worker)
		dmn->workers->kill(dd->worker);
	else
		adopt_end_worker(dmn, set, bdf);
	if (dd->device) {
		adopt_quiesce_device(dmn, bdf, brk_vfio_dev_fd(dd->device));
		brk_irq_disable_all(brk_vfio_dev_irqs(dd->device));
	}
	brk_daemon__dev_release(dd);
	brk_daemon__dev_forget(dd);
	dmn->adopt.quiesced++;
	brk_err("%s: not adopted, quiesced and released: %s", bdf, why);
}

/* Resolves what the last broker was in the middle of (record.h, pending intents): a DMA map
 * that may have happened is undone (the worker's call failed or times out, so the VMM was not
 * told it worked), an unmap is redone, a SET_IRQS index is turned off (the worker re-sends its
 * routing when it sees the new broker). */
static void adopt_pending(struct brk_daemon *dmn, struct brk_rec_state *st)
{
	/* Resolved in the live record and in `st` alike, since the tables are rebuilt from `st`:
	 * resolving takes the entry out of st->pending (the last one moves to its place). */
	while (st->npending) {
		const struct brk_rec_pending copy = st->pending[0], *p = &copy;
		int r = 0;

		if (p->kind == BRK_JOP_DMA_MAP || p->kind == BRK_JOP_DMA_UNMAP) {
			struct brk_vm *vm = brk_registry_find_vm(dmn->reg, p->key);
			struct dmn_vm *v = vm ? vm->priv : NULL;
			struct vfio_iommu_type1_dma_unmap un = {
			    .argsz = sizeof(un), .iova = p->iova, .size = p->size};

			if (v)
				r = dmn->sys->ioctl(dmn->sys->ctx, brk_container_fd(v->container),
						    VFIO_IOMMU_UNMAP_DMA, &un);
		} else if (p->kind == BRK_JOP_IRQ_SET) {
			struct brk_dev_rec *d = brk_registry_find(dmn->reg, p->key);
			struct dmn_assignment *dd = d ? d->priv : NULL;
			struct vfio_irq_set off = {.argsz = sizeof(off),
						   .flags = VFIO_IRQ_SET_DATA_NONE |
							    VFIO_IRQ_SET_ACTION_TRIGGER,
						   .index = p->index};

			if (dd && dd->device)
				r = dmn->sys->ioctl(dmn->sys->ctx, brk_vfio_dev_fd(dd->device),
						    VFIO_DEVICE_SET_IRQS, &off);
		}
		if (r < 0)
			brk_log_errno(LOG_WARNING, r, "resolving a pending %s of %s",
				      p->kind == BRK_JOP_IRQ_SET ? "SET_IRQS" : "DMA change",
				      p->key);
		brk_notice("%s: resolved the last broker's unfinished %s", p->key,
			   p->kind == BRK_JOP_DMA_MAP	  ? "DMA map (unmapped)"
			   : p->kind == BRK_JOP_DMA_UNMAP ? "DMA unmap (unmapped again)"
							  : "SET_IRQS (index turned off)");
		brk_record_resolve(dmn->rec, p->id);
		brk_rec_state_resolve(st, p->id);
	}
}

/* Every adopted VM's DMA table, rebuilt from the record without a kernel call. */
static void adopt_dma(struct brk_daemon *dmn, const struct brk_rec_state *st,
		      struct dmn_assignment *const *dds)
{
	for (uint32_t i = 0; i < st->nvms; i++) {
		const struct brk_rec_vm *rv = st->vms[i];
		struct brk_vm *vm = brk_registry_find_vm(dmn->reg, rv->name);
		struct dmn_vm *v = vm ? vm->priv : NULL;
		struct brk_dma_stats counters = {
		    .maps = rv->maps, .unmaps = rv->unmaps, .shares = rv->shares};
		struct vb_err err = {0};
		int r;

		if (!v || v->dma)
			continue;
		r = brk_daemon__vm_dma(dmn, vm, &err);
		if (r == 0)
			r = brk_dma_restore(v->dma, rv->map, rv->nmaps, &counters, &err);
		if (r < 0)
			brk_err("vm %s: its DMA table cannot be rebuilt: %s", rv->name, err.msg);
	}
	/* What devices that were not adopted had mapped is unmapped: nobody owns it now. */
	for (uint32_t i = 0; i < st->ndevs; i++) {
		struct brk_vm *vm = brk_registry_find_vm(dmn->reg, st->devs[i]->vm);
		struct dmn_vm *v = vm ? vm->priv : NULL;
		uint32_t count = 0;
		uint64_t bytes = 0;

		if (dds[i] || !v || !v->dma)
			continue;
		brk_dma_unmap_owner(v->dma, st->devs[i]->id, &count, &bytes);
		if (count)
			brk_info(
			    "%s: unmapped %u DMA mappings (%llu bytes) of the device not adopted",
			    st->devs[i]->bdf, count, (unsigned long long)bytes);
	}
}

/* The device's worker: its pidfd must name the recorded, living pid; then it is taken over and
 * answers (or faults) through the usual hooks. -ESRCH: it has exited (the caller handles that
 * as a worker crash). */
static int adopt_worker(struct brk_daemon *dmn, struct brk_fdstore_set *set,
			const struct brk_rec_dev *rd, struct dmn_assignment *dd, struct vb_err *err)
{
	int pidfd = adopt_take(set, "wpid", rd->bdf), chan = adopt_take(set, "wch", rd->bdf);
	int r, pid = -ENOENT;

	if (pidfd >= 0)
		pid = dmn->sys->pidfd_pid ? dmn->sys->pidfd_pid(dmn->sys->ctx, pidfd) : -EBADF;
	if (pidfd < 0 || chan < 0)
		r = vb_errf(err, -ENOENT, "its worker's %s is missing",
			    pidfd < 0 ? "pidfd" : "channel");
	else if (pid == -ESRCH)
		r = vb_errf(err, -ESRCH, "its worker (pid %u) exited while no broker ran",
			    rd->worker_pid);
	else if (pid < 0 || (uint32_t)pid != rd->worker_pid)
		r = vb_errf(err, -EBADF, "its worker (pid %u) is not what the pidfd names",
			    rd->worker_pid);
	else
		r = brk_daemon__worker_adopt(dd, pid, pidfd, chan, err);
	if (r < 0) {
		if (pidfd >= 0)
			close(pidfd);
		if (chan >= 0)
			close(chan); /* a worker that is still there ends on the hang-up */
	}
	return r;
}

/* A recorded device registered again under its old id, with what the record says of it; its
 * VFIO objects and worker are adopt_device()'s and adopt_finish()'s. NULL (said) when it cannot
 * be. */
static struct dmn_assignment *adopt_register(struct brk_daemon *dmn, const struct brk_rec_state *st,
					     const struct brk_rec_dev *rd)
{
	struct dmn_assignment *dd = calloc(1, sizeof(*dd));
	struct brk_dev_rec *d;

	if (!dd || brk_registry_add(dmn->reg, rd->bdf, rd->vm, &d, NULL) < 0) {
		free(dd);
		brk_err("%s: cannot be registered again", rd->bdf);
		return NULL;
	}
	d->priv = dd;
	dd->rec = d;
	dd->dmn = dmn;
	dd->vmm_fd = dd->vfu_fd = -1;
	brk_registry_restore_id(dmn->reg, d, rd->id, st->next_id);
	d->owner_uid = rd->owner_uid;
	d->owner_gid = rd->owner_gid;
	d->allow_mmap = rd->allow_mmap;
	d->protocols = rd->protocols;
	d->iommu_group = rd->iommu_group;
	d->restarts = rd->restarts;
	snprintf(d->socket_path, sizeof(d->socket_path), "%s", rd->socket_path);
	snprintf(d->vfu_socket_path, sizeof(d->vfu_socket_path), "%s", rd->vfu_socket_path);
	snprintf(d->last_fault, sizeof(d->last_fault), "%s", rd->last_fault);
	dd->generation = rd->generation;
	dd->resets_before = rd->resets_before;
	dd->worker_uid = rd->worker_uid;
	dd->worker_gid = rd->worker_gid;
	return dd;
}

/* The last step of a device whose VFIO objects were adopted, once the DMA tables are rebuilt:
 * its interrupts, its record, its worker. A worker found dead is a worker crash (the device,
 * its VM and group are sound); anything else that fails drops the device. */
static void adopt_finish(struct brk_daemon *dmn, struct brk_fdstore_set *set,
			 const struct brk_rec_dev *rd, struct dmn_assignment *dd)
{
	struct vb_err err = {0};

	if (!((struct dmn_vm *)dd->rec->vm->priv)->dma)
		vb_errf(&err, -EIO, "its VM's DMA table could not be rebuilt");
	else if (adopt_irqs(dd, rd, &err) == 0 && brk_daemon__rec_dev(dd) == 0 &&
		 adopt_worker(dmn, set, rd, dd, &err) == -ESRCH) {
		/* The device, its VM and group are sound: the same as a worker that crashed
		 * under this broker (restart policy), not a device to drop. */
		dmn->adopt.adopted++;
		brk_notice("%s: adopted (vm %s); %s: handled as a worker crash", rd->bdf, rd->vm,
			   err.msg);
		brk_daemon__worker_lost(dd, (pid_t)rd->worker_pid, err.msg);
		return;
	}
	if (err.msg[0]) {
		adopt_drop(dd, set, err.msg);
		return;
	}
	dmn->adopt.adopted++;
	brk_info("%s: adopted (vm %s, worker %u, generation %u)", rd->bdf, rd->vm, rd->worker_pid,
		 rd->generation);
}

static void adopt_trusted(struct brk_daemon *dmn, struct brk_fdstore_set *set,
			  struct brk_rec_state *st)
{
	struct dmn_assignment **dds = calloc(st->ndevs ? st->ndevs : 1, sizeof(*dds));
	struct dmn_assignment **failed = calloc(st->ndevs ? st->ndevs : 1, sizeof(*failed));
	struct vb_err err = {0};
	char(*why)[sizeof(err.msg)] = calloc(st->ndevs ? st->ndevs : 1, sizeof(*why));

	if (!dds || !failed || !why) {
		free(dds);
		free(failed);
		free(why);
		return;
	}
	for (uint32_t i = 0; i < st->ndevs; i++) {
		const struct brk_rec_dev *rd = st->devs[i];
		struct dmn_assignment *dd = adopt_register(dmn, st, rd);

		if (!dd)
			continue;
		err.msg[0] = '\0';
		if (rd->state == BRK_DEV_FAULTED || rd->state == BRK_DEV_REMOVING ||
		    rd->state == BRK_DEV_ABANDONED || !rd->worker_pid)
			vb_errf(&err, -ESHUTDOWN, "it was %s without a worker",
				brk_dev_state_name((enum brk_dev_state)rd->state));
		else if (adopt_allowed(dmn, rd->bdf, &err) == 0)
			adopt_device(dmn, set, st, rd, dd, &err);
		if (err.msg[0]) {
			failed[i] = dd;
			snprintf(why[i], sizeof(why[i]), "%s", err.msg);
			continue;
		}
		dd->adopted = true;
		dds[i] = dd;
	}
	/* Only now: a VM whose first device fails keeps its container for the others. */
	for (uint32_t i = 0; i < st->ndevs; i++)
		if (failed[i])
			adopt_drop(failed[i], set, why[i]);
	/* The kernel and the record agree from here on; then the tables are rebuilt from it. */
	adopt_pending(dmn, st);
	adopt_dma(dmn, st, dds);
	for (uint32_t i = 0; i < st->ndevs; i++)
		if (dds[i])
			adopt_finish(dmn, set, st->devs[i], dds[i]);
	free(dds);
	free(failed);
	free(why);
}

/* systemd still holds everything the last broker stored: what is not taken over must leave
 * its store too, or the groups and devices would stay open there. */
static void adopt_forget(struct brk_daemon *dmn, const struct brk_fdstore_set *set,
			 const bool *was_passed)
{
	for (size_t i = 0; dmn->store && i < set->n; i++) {
		int r;

		if (!was_passed[i] || set->e[i].fd >= 0 ||
		    brk_fdstore_get(dmn->store, set->e[i].name) >= 0)
			continue;
		r = brk_fdstore_forget(dmn->store, set->e[i].name);
		if (r < 0 && r != -EINVAL)
			brk_log_errno(LOG_WARNING, r, "removing %s from the fd store",
				      set->e[i].name);
	}
}

/* A fresh record, in the store before anything is written to it: every change from here on is
 * durable there. Without a store nothing would ever read it. */
static void adopt_new_record(struct brk_daemon *dmn, uint64_t starts)
{
	struct vb_err err = {0};
	int r;

	if (!dmn->store)
		return;
	r = brk_record_new(&dmn->rec, &err);
	if (r == 0) {
		r = brk_fdstore_put(dmn->store, "state", brk_record_fd(dmn->rec));
		if (r < 0)
			vb_errf(&err, r, "cannot keep it in the fd store: %s", strerror(-r));
	}
	if (r == 0 && (r = brk_record_set_broker(dmn->rec, starts, brk_worker_epoch())) < 0)
		vb_errf(&err, r, "%s", strerror(-r));
	if (r < 0) {
		brk_record_free(dmn->rec);
		dmn->rec = NULL;
		brk_log_errno(LOG_ERR, r,
			      "no state record (%s): a restart of this broker will quiesce every "
			      "device",
			      err.msg);
	}
	dmn->adopt.starts = starts;
}

void brk_daemon_adopt(struct brk_daemon *dmn, struct brk_fdstore_set *set)
{
	struct vb_err err = {0};
	struct brk_rec_state *st = NULL;
	int state;
	uint64_t t0 = adopt_now_ms();
	_cleanup_free_ bool *was_passed = calloc(set->n ? set->n : 1, sizeof(bool));
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++) {
		if (set->e[i].fd >= 0 && was_passed)
			was_passed[i] = true;
		n += set->e[i].fd >= 0;
	}
	dmn->adopt = (struct dmn_adopt){0};
	if (n == 0) {
		adopt_new_record(dmn, 1); /* a first start: nothing to take over */
		return;
	}
	dmn->adopt.attempted = true;
	state = brk_fdstore_set_take(set, "state");
	if (state < 0)
		vb_errf(&err, -ENOENT, "no state record among the %zu fds passed", n);
	else if (brk_record_adopt(state, &dmn->rec, &err) < 0)
		dmn->rec = NULL;
	if (state >= 0)
		close(state); /* the record keeps its own dup */
	/* A copy of its own: the record's live state changes under every write adoption makes. */
	if (dmn->rec && brk_record_load(brk_record_fd(dmn->rec), &st, &err) < 0) {
		brk_record_free(dmn->rec);
		dmn->rec = NULL;
	}
	if (dmn->rec) {
		int r =
		    dmn->store ? brk_fdstore_put(dmn->store, "state", brk_record_fd(dmn->rec)) : 0;

		if (r == 0)
			r = brk_record_set_broker(dmn->rec, st->starts + 1, brk_worker_epoch());
		if (r < 0)
			brk_log_errno(LOG_ERR, r, "keeping the adopted state record");
		dmn->adopt.starts = st->starts + 1;
		adopt_trusted(dmn, set, st);
		brk_rec_state_free(st);
		/* What no record entry names: closed (and quiesced where it is a VFIO object). */
		adopt_leftovers(dmn, set);
	} else {
		adopt_quiesce_all(dmn, set, err.msg);
	}
	if (was_passed)
		adopt_forget(dmn, set, was_passed);
	if (!dmn->rec)
		adopt_new_record(dmn, 1);
	brk_notice("took over from the last broker in %llu ms: %u devices adopted, %u quiesced%s%s",
		   (unsigned long long)(adopt_now_ms() - t0), dmn->adopt.adopted,
		   dmn->adopt.quiesced, dmn->adopt.untrusted[0] ? "; untrusted state: " : "",
		   dmn->adopt.untrusted);
	dmn->adopt.ms = adopt_now_ms() - t0;
}
