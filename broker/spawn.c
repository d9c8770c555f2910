/*
 * spawn: the files and processes the broker makes for a worker. Responsible for the VMM socket
 * directory's ownership and mode, for never following a symlink an owner planted in its own
 * directory, and for translating the configuration into a sandbox spec. Trusts policy/'s
 * sbx_spawn_worker() for the sandbox itself; trusts `vm` and `bdf` to have been validated.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base.h"
#include "ipc.h"
#include "sandbox.h"

/* Opens <runtime_dir>/<vm>, making it first if needed: the broker's, mode 0755, so that only
 * the broker can create or remove the sockets in it. */
static int spawn_vm_dir(const char *runtime_dir, const char *vm, struct vb_err *err)
{
	char dir[PATH_MAX];
	int fd;

	snprintf(dir, sizeof(dir), "%s/%s", runtime_dir, vm);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int e = errno;

		return vb_errf(err, -e, "cannot create %s: %s", dir, strerror(e));
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		return vb_errf(err, -e, "cannot open %s: %s", dir, strerror(e));
	}
	return fd;
}

int brk_spawn_vmm_socket(const char *runtime_dir, const char *vm, const char *bdf,
			 uint32_t protocol, uid_t owner_uid, gid_t owner_gid, char *path,
			 size_t pathsz, int *ret_fd, struct vb_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bool vfu = protocol == BRK_PROTO_VFIO_USER;
	const char *suffix = vfu ? ".vfio-user.sock" : ".sock";
	_cleanup_close_ int dfd = -1, fd = -1;
	char name[VB_BDF_LEN + 24];
	int n;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s/%s%s", runtime_dir, vm, bdf, suffix);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || (size_t)n >= pathsz)
		return vb_errf(err, -ENAMETOOLONG,
			       "socket path for %s/%s is too long for a unix socket", vm, bdf);
	snprintf(name, sizeof(name), "%s%s", bdf, suffix);
	dfd = spawn_vm_dir(runtime_dir, vm, err);
	if (dfd < 0)
		return dfd;
	/* A socket left by an earlier worker of this device. */
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return vb_errf(err, -errno, "cannot remove stale %s: %s", sa.sun_path,
			       strerror(errno));
	fd = socket(AF_UNIX, (vfu ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vb_errf(err, -errno, "socket: %s", strerror(errno));
	/* unix_bind() gives the new node the socket inode's mode minus the umask: set it on the
	 * fd, so that the node never exists with another mode. Then it goes to the VM's owner; the
	 * connect() it allows is checked again by the worker (SO_PEERCRED against the owner). */
	if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchownat(dfd, name, owner_uid, owner_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    listen(fd, 4) < 0) {
		int e = errno;

		unlinkat(dfd, name, 0);
		return vb_errf(err, -e, "cannot listen on %s for uid %u: %s", sa.sun_path,
			       (unsigned)owner_uid, strerror(e));
	}
	snprintf(path, pathsz, "%s", sa.sun_path);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

void brk_spawn_vmm_socket_remove(const char *runtime_dir, const char *vm, const char *path,
				 bool last)
{
	char dir[PATH_MAX];

	if (path && path[0])
		unlink(path);
	if (last) {
		snprintf(dir, sizeof(dir), "%s/%s", runtime_dir, vm);
		unlinkat(AT_FDCWD, dir, AT_REMOVEDIR);
	}
}

uint64_t brk_spawn_worker_nofile(uint32_t vectors)
{
	return 32 + 16 + 2 * (uint64_t)vectors;
}

static size_t spawn_rlimits(const struct brk_config *cfg, uint64_t nofile, struct sbx_rlimit *rl)
{
	const struct brk_worker_rlimits *w = &cfg->rlimits;
	size_t n = 0;

	rl[n++] = (struct sbx_rlimit){RLIMIT_NOFILE, (rlim_t)nofile};
	rl[n++] = (struct sbx_rlimit){RLIMIT_NPROC, (rlim_t)w->nproc};
	rl[n++] = (struct sbx_rlimit){RLIMIT_FSIZE, (rlim_t)w->fsize};
	rl[n++] = (struct sbx_rlimit){RLIMIT_MEMLOCK, (rlim_t)w->memlock};
	rl[n++] = (struct sbx_rlimit){RLIMIT_CORE, (rlim_t)w->core};
	rl[n++] = (struct sbx_rlimit){RLIMIT_AS, w->as ? (rlim_t)w->as : RLIM_INFINITY};
	return n;
}

static const char *spawn_seccomp_arg(enum brk_seccomp_mode m)
{
	return m == BRK_SECCOMP_OFF   ? "--seccomp=off"
	       : m == BRK_SECCOMP_LOG ? "--seccomp=log"
				      : "--seccomp=kill";
}

/* The sandbox spec of a worker as uid/gid with `nofile` open files and `argv`, its channel
 * `chan` placed at fd 3. */
static void spawn_spec(const struct brk_config *cfg, uid_t uid, gid_t gid, uint64_t nofile,
		       char **argv, const int *chan, struct sbx_rlimit *rl,
		       struct sbx_spawn_error *serr, struct sbx_worker_spec *spec)
{
	*spec = (struct sbx_worker_spec){
	    .exe = cfg->worker_path,
	    .argv = argv,
	    .envp = NULL,
	    .fds = chan,
	    .nfds = 1,
	    .stderr_fd = STDERR_FILENO,
	    .uid = uid,
	    .gid = gid,
	    .rlimits = rl,
	    .nrlimits = spawn_rlimits(cfg, nofile, rl),
	    .error = serr,
	};
}

int brk_spawn_worker(const struct brk_config *cfg, uid_t uid, gid_t gid, uint64_t nofile,
		     pid_t *ret_pid, int *ret_pidfd, int *ret_chan_fd, struct vb_err *err)
{
	struct sbx_spawn_error serr = {0};
	struct sbx_worker_spec spec;
	struct sbx_rlimit rl[8];
	char *argv[] = {"vfio-worker", (char *)spawn_seccomp_arg(cfg->seccomp), NULL};
	int sp[2], r;

	if (nofile > cfg->rlimits.nofile) {
		return vb_errf(err, -EMFILE,
			       "the device needs a worker with %llu open files (2 per interrupt "
			       "vector); [worker] rlimit_nofile allows %llu",
			       (unsigned long long)nofile, (unsigned long long)cfg->rlimits.nofile);
	}
	r = ipc_socketpair(sp);
	if (r < 0)
		return vb_errf(err, r, "socketpair: %s", strerror(-r));
	spawn_spec(cfg, uid, gid, nofile, argv, &sp[1], rl, &serr, &spec);
	r = sbx_spawn_worker(&spec, ret_pid, ret_pidfd);
	close(sp[1]);
	if (r < 0) {
		vb_errf(err, r, "cannot start %s as uid %u: %s: %s", cfg->worker_path,
			(unsigned)uid, serr.step[0] ? serr.step : "spawn", strerror(-r));
		close(sp[0]);
		return r;
	}
	*ret_chan_fd = sp[0];
	return 0;
}

int brk_spawn_prestart_begin(const struct brk_config *cfg, uid_t uid, gid_t gid,
			     struct sbx_pending *ret, int *ret_chan_fd, struct vb_err *err)
{
	char timeout[40];
	struct sbx_spawn_error serr = {0};
	struct sbx_worker_spec spec;
	struct sbx_rlimit rl[8];
	char *argv[] = {"vfio-worker", (char *)spawn_seccomp_arg(cfg->seccomp), timeout, NULL};
	int sp[2], r;

	/* It waits for a HANDOFF that may come much later than a device's worker's (10 s). */
	snprintf(timeout, sizeof(timeout), "--handoff-timeout=%d", BRK_PRESTART_HANDOFF_MS);
	r = ipc_socketpair(sp);
	if (r < 0)
		return vb_errf(err, r, "socketpair: %s", strerror(-r));
	/* Its device is not known yet: the configured ceiling, which every device's own need
	 * stays under (brk_spawn_worker_nofile() is checked against it when it is taken). */
	spawn_spec(cfg, uid, gid, cfg->rlimits.nofile, argv, &sp[1], rl, &serr, &spec);
	r = sbx_spawn_begin(&spec, ret);
	close(sp[1]);
	if (r < 0) {
		close(sp[0]);
		return vb_errf(err, r, "cannot start %s as uid %u: %s: %s", cfg->worker_path,
			       (unsigned)uid, serr.step[0] ? serr.step : "spawn", strerror(-r));
	}
	*ret_chan_fd = sp[0];
	return 0;
}
