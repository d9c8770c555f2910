/*
 * daemon: vfio-brokerd's state and flows. Owns the registry of VMs and devices, their VFIO
 * objects (one container and DMA table per VM, groups shared by a VM's devices, one device
 * handle per device) and their workers; carries out AddDevice and RemoveDevice; quiesces a
 * device whose worker faulted and applies the restart policy; answers status, list and metrics.
 * main.c sets the process up around it; control.c and worker.c call into it through their hooks.
 */
#ifndef VB_BROKER_DAEMON_H
#define VB_BROKER_DAEMON_H

#include <stdio.h>
#include <uv.h>

#include "config.h"
#include "control.h"
#include "fdstore.h"
#include "sys.h"
#include "worker.h"

struct brk_daemon;

/* What the daemon acts through: the kernel (VFIO, sysfs) and the worker processes. NULL, or a
 * NULL member, means the real one; host tests pass fakes (tests/test_daemon.c). */
struct brk_daemon_env {
	const struct brk_sys *sys;
	const struct brk_worker_ops *workers;
	/* Where the fds of every container, group, device and worker are kept so that the next
	 * broker can adopt them (fdstore.h); NULL: nowhere, a broker that exits takes them along.
	 */
	struct brk_fdstore *store;
};

/* Takes the control socket `listen_fd` on success. `cfg` and `env` must outlive the daemon. */
int brk_daemon_new(uv_loop_t *loop, const struct brk_config *cfg, int listen_fd,
		   const struct brk_daemon_env *env, struct brk_daemon **ret);
/* Takes over what the last broker left in `set` (brk_fdstore_receive: the fd store after a
 * restart, or a re-exec's handover) after checking it against the kernel, or quiesces all of it
 * when it cannot be trusted, with a loud log line either way. Takes the fds it uses out of the
 * set; the caller frees the set, which closes the rest. Run before the loop serves anyone. */
void brk_daemon_adopt(struct brk_daemon *d, struct brk_fdstore_set *set);
/* The control server, for a re-exec's handover of its sessions (control.h). */
struct brk_ctl *brk_daemon_ctl(struct brk_daemon *d);
/* The pre-started workers (pool.h) end before a re-exec, which would leave them unknown
 * children of the new image; resume refills the pool when the re-exec did not happen. */
void brk_daemon_prestart_drain(struct brk_daemon *d);
void brk_daemon_prestart_resume(struct brk_daemon *d);
/* Ends every worker, quiesces and releases every device, closes the control socket. Run the
 * loop afterwards so libuv can close the handles. */
void brk_daemon_free(struct brk_daemon *d);

/* The control operations (exported for daemon_status.c, which implements the read-only ones). */
extern const struct brk_ctl_ops brk_daemon_ctl_ops;

#endif
