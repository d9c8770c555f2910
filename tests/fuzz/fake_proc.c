/*
 * fake_proc: spawn.c and supervise.c stood in for (fake_proc.h). Only for fuzz targets.
 */
#include "fake_proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_msgs.h"
#include "ipc.h"
#include "spawn.h"
#include "supervise.h"

struct fake_proc fake_procs[FAKE_PROC_MAX];
int fake_proc_kills;

struct brk_sup {
	struct brk_sup_cfg cfg;
	struct fake_proc *p;
};

static struct brk_sup *sups[FAKE_PROC_MAX];

uint64_t brk_spawn_worker_nofile(uint32_t vectors)
{
	return 48 + 2 * (uint64_t)vectors;
}

int brk_spawn_worker(const struct brk_config *cfg, uid_t uid, gid_t gid, uint64_t nofile,
		     pid_t *ret_pid, int *ret_pidfd, int *ret_chan_fd, struct vb_err *err)
{
	int sv[2], i;

	for (i = 0; i < FAKE_PROC_MAX && fake_procs[i].live; i++)
		;
	if (i == FAKE_PROC_MAX)
		return vb_errf(err, -EAGAIN, "fake_proc: too many workers");
	if (ipc_socketpair(sv) < 0)
		fuzz_fail("fake_proc: socketpair: %m");
	if (fake_procs[i].peer >= 0)
		close(fake_procs[i].peer); /* a worker of this input that is gone */
	fake_procs[i] = (struct fake_proc){.peer = sv[1], .live = true};
	*ret_pid = 10000 + i;
	*ret_pidfd = -1;
	*ret_chan_fd = sv[0];
	return 0;
}

/* fuzz_ctl's configuration has prestart = 0: the pool never starts one here. */
int brk_spawn_prestart_begin(const struct brk_config *cfg, uid_t uid, gid_t gid,
			     struct sbx_pending *ret, int *ret_chan_fd, struct vb_err *err)
{
	(void)cfg;
	(void)uid;
	(void)gid;
	(void)ret;
	(void)ret_chan_fd;
	return vb_errf(err, -ENOSYS, "fake_proc: no pre-started workers");
}

int brk_sup_start(uv_loop_t *loop, pid_t pid, int pidfd, const struct brk_sup_cfg *cfg,
		  struct brk_sup **ret)
{
	struct brk_sup *s = calloc(1, sizeof(*s));
	int i = pid - 10000;

	if (!s || i < 0 || i >= FAKE_PROC_MAX)
		fuzz_fail("fake_proc: supervising pid %d, which fake_proc did not spawn", (int)pid);
	s->cfg = *cfg;
	s->p = &fake_procs[i];
	sups[i] = s;
	*ret = s;
	return 0;
}

int64_t brk_sup_heartbeat_answered(struct brk_sup *s, uint64_t seq)
{
	return 0;
}

void brk_sup_stop_heartbeats(struct brk_sup *s)
{
}

int brk_sup_kill(struct brk_sup *s)
{
	if (!s->p->killed)
		fake_proc_kills++;
	s->p->killed = true;
	return 0;
}

void brk_sup_free(struct brk_sup *s)
{
	for (int i = 0; i < FAKE_PROC_MAX; i++)
		if (sups[i] == s) {
			sups[i] = NULL;
			fake_procs[i].live = false;
		}
	free(s);
}

int fake_proc_reap(void)
{
	int n = 0;

	for (int i = 0; i < FAKE_PROC_MAX; i++) {
		struct brk_sup *s = sups[i];

		if (!s || !s->p->killed || s->p->reaped)
			continue;
		s->p->reaped = true;
		n++;
		/* May free the supervisor (the worker's exited hook frees the worker). */
		s->cfg.hooks->exited(s->cfg.ctx, CLD_KILLED, SIGKILL);
	}
	return n;
}

void fake_proc_reset(void)
{
	static bool inited; /* before, the table is zeroes, not fds */

	for (int i = 0; i < FAKE_PROC_MAX; i++) {
		if (inited && fake_procs[i].peer >= 0)
			close(fake_procs[i].peer);
		fake_procs[i] = (struct fake_proc){.peer = -1};
		sups[i] = NULL;
	}
	fake_proc_kills = 0;
	inited = true;
}

int brk_spawn_vmm_socket(const char *runtime_dir, const char *vm, const char *bdf,
			 uint32_t protocol, uid_t owner_uid, gid_t owner_gid, char *path,
			 size_t pathsz, int *ret_fd, struct vb_err *err)
{
	int fd = fuzz_listener(protocol == BRK_PROTO_VFIO_USER ? SOCK_STREAM : SOCK_SEQPACKET);

	snprintf(path, pathsz, "%s/%s/%s%s.sock", runtime_dir, vm, bdf,
		 protocol == BRK_PROTO_VFIO_USER ? ".vfio-user" : "");
	*ret_fd = fd;
	return 0;
}

void brk_spawn_vmm_socket_remove(const char *runtime_dir, const char *vm, const char *path,
				 bool last)
{
}
