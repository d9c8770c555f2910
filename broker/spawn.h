/*
 * spawn: what the broker prepares for a worker process. The VMM listening socket of a device
 * (owned by the VM's owner, mode 0600), and the worker itself: a socketpair whose
 * child end becomes the worker's fd 3 (the broker channel), started in its sandbox with
 * sbx_spawn_worker() under the configured uid, rlimits and seccomp mode.
 */
#ifndef VB_BROKER_SPAWN_H
#define VB_BROKER_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "err.h"

struct sbx_pending;

/* The worker's fd for its broker channel (the first fd sbx_spawn_worker() places). */
#define BRK_WORKER_CHANNEL_FD 3

/*
 * Creates (if needed) <runtime_dir>/<vm>/ (the broker's, mode 0755) and binds a listening socket
 * owned by owner_uid:owner_gid with mode 0600 (a stale one is replaced): for the native protocol
 * (`protocol` BRK_PROTO_NATIVE) SOCK_SEQPACKET <runtime_dir>/<vm>/<bdf>.sock, for vfio-user
 * (BRK_PROTO_VFIO_USER) SOCK_STREAM <runtime_dir>/<vm>/<bdf>.vfio-user.sock. `vm` and `bdf` must
 * be validated names. Returns 0 with the path in `path` and the fd in *ret_fd; errors are
 * negative errno with a message in err.
 */
int brk_spawn_vmm_socket(const char *runtime_dir, const char *vm, const char *bdf,
			 uint32_t protocol, uid_t owner_uid, gid_t owner_gid, char *path,
			 size_t pathsz, int *ret_fd, struct vb_err *err);
/* Removes a device's socket, and the VM's directory when `last` (it is empty then). */
void brk_spawn_vmm_socket_remove(const char *runtime_dir, const char *vm, const char *path,
				 bool last);

/*
 * The open files a worker needs for a device with `vectors` MSI/MSI-X/INTx vectors in all: per
 * vector a dup of the VMM's irqfd and an eventfd of its own, plus its fixed set (stderr, broker
 * channel, device, VMM socket and connection, event loop, epoll) and the fds one message may
 * bring (IPC default of 16).
 */
uint64_t brk_spawn_worker_nofile(uint32_t vectors);

/*
 * Starts a worker as uid/gid: its fd 3 is one end of a new socketpair, its stderr the broker's.
 * Its RLIMIT_NOFILE is `nofile`: what its device needs (brk_spawn_worker_nofile()); the
 * configured rlimit_nofile is a ceiling, and a device that needs more is refused (-EMFILE, with
 * both numbers in err) rather than given a worker that would fail at its first MSI-X enable.
 * Returns 0 with the pid, the pidfd (owned by the caller) and the broker's end of the channel
 * (owned by the caller), or a negative errno with the failing sandbox step in err.
 */
int brk_spawn_worker(const struct brk_config *cfg, uid_t uid, gid_t gid, uint64_t nofile,
		     pid_t *ret_pid, int *ret_pidfd, int *ret_chan_fd, struct vb_err *err);

/* How long a pre-started worker waits for its HANDOFF (--handoff-timeout): INT_MAX ms, about
 * 24.8 days; the pool replaces one that gave up. */
#define BRK_PRESTART_HANDOFF_MS 2147483647

/*
 * A worker for the pool (pool.h): sandboxed as uid/gid like brk_spawn_worker()'s, with the
 * configured rlimit_nofile (its device is not known yet), waiting for its HANDOFF. Does not wait
 * for its exec: *ret is the pending spawn (sbx_spawn_end() once ret->report_fd is readable);
 * *ret_chan_fd the broker's end of its channel. Errors: negative errno, the step in err.
 */
int brk_spawn_prestart_begin(const struct brk_config *cfg, uid_t uid, gid_t gid,
			     struct sbx_pending *ret, int *ret_chan_fd, struct vb_err *err);

#endif
