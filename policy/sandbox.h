/*
 * sandbox: starts a worker process inside the sandbox described in policy/README.md: its own
 * user, pid, net, mount, ipc, uts and cgroup namespaces, an empty read-only tmpfs as its root,
 * an unprivileged uid/gid, no capabilities in any set, rlimits, no_new_privs, then execveat() of
 * a static executable by fd. The worker loads its seccomp policy itself once initialised
 * (sbx_seccomp_load(SBX_ROLE_WORKER, ...)); the caller's own filter, if any, is inherited.
 *
 * Errors are negative errno values. Nothing here logs.
 */
#ifndef VB_SANDBOX_H
#define VB_SANDBOX_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

struct vb_err;

/* At most this many fds are passed to a worker (placed at 3, 4, ...). */
#define SBX_FDS_MAX 64

/* One rlimit, set as both soft and hard limit in the worker. */
struct sbx_rlimit {
	int resource; /* RLIMIT_* */
	rlim_t limit;
};

/* Where a spawn failed: `step` names the sandbox step ("open exe", "mount tmpfs", "pivot_root",
 * "setresuid", "execveat", ...) and `err` is the negative errno it failed with. */
struct sbx_spawn_error {
	int err;
	char step[32];
};

struct sbx_worker_spec {
	const char *exe;   /* path of a static executable; opened before the sandbox exists */
	char *const *argv; /* NULL-terminated, argv[0] required */
	char *const *envp; /* NULL-terminated; NULL for an empty environment */
	const int *fds;	   /* placed at 3, 4, ... in this order; the caller keeps its copies */
	size_t nfds;	   /* <= SBX_FDS_MAX */
	int stderr_fd;	   /* placed at 2 (for the worker's log); -1 for /dev/null */
	uid_t uid;	   /* host uid and gid the worker runs as; never 0 */
	gid_t gid;
	const struct sbx_rlimit *rlimits; /* NULL and 0: sbx_worker_rlimits_default */
	size_t nrlimits;
	struct sbx_spawn_error *error; /* optional: filled in when the spawn fails */
};

/* Open files 64, processes 1, file size 0, locked memory 0, core 0, address space 1 GiB. A
 * broker raises RLIMIT_NOFILE for devices with many interrupt vectors (one eventfd each). */
extern const struct sbx_rlimit sbx_worker_rlimits_default[];
extern const size_t sbx_worker_rlimits_default_count;

/*
 * Creates the worker as a direct child (clone3 with CLONE_PIDFD, exit signal SIGCHLD), so the
 * caller supervises it with *ret_pidfd (poll for exit, waitid(P_PIDFD), pidfd_send_signal).
 * The worker is pid 1 of its pid namespace: from outside, only SIGKILL and SIGSTOP, or signals
 * it installed a handler for, reach it. No parent-death signal is set: a worker may outlive its
 * spawner (a broker restarting with its workers kept). What ends it is the caller's business; the
 * broker's workers end when their broker channel, one of the fds passed, hangs up (that channel
 * exists before the child runs, so a spawner that dies at any instant still ends it). A spawner
 * that dies before the child is released (its uid/gid maps written) ends it at once.
 *
 * Returns 0 once the worker has been exec'd, with *ret_pid and *ret_pidfd (O_CLOEXEC, owned by
 * the caller). On failure no child is left behind (it has been reaped) and:
 *   -EINVAL   bad spec (no exe or argv, uid or gid 0, too many fds, bad rlimit resource);
 *   -EBADF    an fd of the spec is not open;
 *   -ETIMEDOUT the child neither exec'd nor failed within 5 s;
 *   other     the errno of the failed step, named in spec->error.
 * Blocks until the child has exec'd (milliseconds; sbx_spawn_begin() below does not). The caller
 * must be privileged enough to write a child's uid_map/gid_map with the given ids
 * (CAP_SETUID/CAP_SETGID) and to create a user namespace.
 */
int sbx_spawn_worker(const struct sbx_worker_spec *spec, pid_t *ret_pid, int *ret_pidfd);

/* A worker whose sandbox is being built: the child exists, its uid/gid maps are written and it
 * has been released; it has not exec'd yet. */
struct sbx_pending {
	pid_t pid;
	int pidfd;     /* O_CLOEXEC */
	int report_fd; /* O_CLOEXEC | O_NONBLOCK: readable once the child exec'd (EOF) or failed */
};

/*
 * sbx_spawn_worker() in two halves, for a caller with an event loop that must not wait for the
 * child's exec (tens of milliseconds under emulation). sbx_spawn_begin() validates the spec,
 * clones the child, writes its id maps and releases it: what the caller's privilege is needed
 * for, done before it returns. The child then builds its sandbox alone; the caller watches
 * `report_fd` and, once it is readable, calls sbx_spawn_end(): 0 when the child exec'd (pid and
 * pidfd are the caller's from then on, report_fd is closed), -EAGAIN when nothing has happened
 * yet (call again when readable), or the failed step's negative errno with `error` filled in,
 * the child killed and reaped and every fd of `p` closed. A caller giving up (a timeout, its own
 * shutdown) calls sbx_spawn_abort(), which kills and reaps the child and closes the fds.
 * Errors of sbx_spawn_begin() are sbx_spawn_worker()'s; no child is left behind.
 */
int sbx_spawn_begin(const struct sbx_worker_spec *spec, struct sbx_pending *ret);
int sbx_spawn_end(struct sbx_pending *p, struct sbx_spawn_error *error);
void sbx_spawn_abort(struct sbx_pending *p);

/*
 * Whether this process can sandbox workers at all, found by trying: a child made with the
 * worker's clone3 namespace flags mounts a tmpfs in its own mount namespace and exits. 0 when it
 * could; otherwise a negative errno and, in `err`, one line saying why (the process runs in a
 * chroot, kernel.unprivileged_userns_clone or user.max_user_namespaces is 0, a container's
 * seccomp filter refuses clone3, ...). Blocks for the child's lifetime (milliseconds).
 */
int sbx_userns_probe(struct vb_err *err);

#endif
