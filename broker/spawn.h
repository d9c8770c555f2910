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

/* The worker's fd for its broker channel (the first fd sbx_spawn_worker() places). */
#define BRK_WORKER_CHANNEL_FD 3

/*
 * Creates (if needed) <runtime_dir>/<vm>/ (root's, mode 0755) and binds a listening
 * SOCK_SEQPACKET socket <runtime_dir>/<vm>/<bdf>.sock owned by owner_uid:owner_gid with mode 0600
 * (a stale one is replaced). `vm` and `bdf` must be validated names. Returns 0 with the path in
 * `path` and the fd in *ret_fd; errors are negative errno with a message in err.
 */
int brk_spawn_vmm_socket(const char *runtime_dir, const char *vm, const char *bdf, uid_t owner_uid,
			 gid_t owner_gid, char *path, size_t pathsz, int *ret_fd, char *err,
			 size_t errsz);
/* Removes a device's socket, and the VM's directory when `last` (it is empty then). */
void brk_spawn_vmm_socket_remove(const char *runtime_dir, const char *vm, const char *path,
				 bool last);

/*
 * Starts a worker as uid/gid: its fd 3 is one end of a new socketpair, its stderr the broker's.
 * Returns 0 with the pid, the pidfd (owned by the caller) and the broker's end of the channel
 * (owned by the caller), or a negative errno with the failing sandbox step in err.
 */
int brk_spawn_worker(const struct brk_config *cfg, uid_t uid, gid_t gid, pid_t *ret_pid,
		     int *ret_pidfd, int *ret_chan_fd, char *err, size_t errsz);

#endif
