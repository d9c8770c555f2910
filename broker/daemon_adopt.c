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
	snprintf(dmn->adopt.untrusted, sizeof(dmn->adopt.untrusted), "%s", why);
	brk_err("state of the last broker not adopted: %s; quiesced %u devices (interrupts off, "
		"DMA unmapped, reset), ended %u workers, released %u groups and %u containers%s",
		why, devs, workers, groups, ctrs,
		stale ? "; fds that were not what their names said closed untouched" : "");
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
	adopt_quiesce_all(dmn, set, "no state record among the fds passed");
	if (was_passed)
		adopt_forget(dmn, set, was_passed);
	adopt_new_record(dmn, 1);
	dmn->adopt.ms = adopt_now_ms() - t0;
}
