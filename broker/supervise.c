/*
 * supervise: pidfd and heartbeat supervision of one worker. Responsible for noticing a worker's
 * death or hang promptly, for reaping it exactly once, and for signalling it only through its
 * pidfd. Trusts nothing the worker does; trusts the kernel's pidfd semantics (readable once the
 * process has exited; waitid(P_PIDFD) reaps exactly that child).
 */
#include "supervise.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct brk_sup {
	uv_poll_t poll;
	uv_timer_t timer;
	int pidfd;
	pid_t pid;
	struct brk_sup_cfg cfg;
	uint64_t seq;	       /* last heartbeat sent */
	uint64_t sent_ms;      /* when it was sent (uv_now) */
	uint64_t tick_ms;      /* the timer's period */
	uint64_t last_tick_ms; /* when the timer last ran (uv_now) */
	bool awaiting;	       /* `seq` has not been answered */
	bool hung_reported;    /* the hang of `seq` was reported */
	bool exited, freeing;  /* reaped; brk_sup_free called */
	int open_handles;
};

static int sup_pidfd_signal(int pidfd, int sig)
{
	/* glibc 2.36 has no wrapper in every configuration; the syscall is stable. */
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

/* Reaps the child if it has exited; 1 when reaped, 0 when still running, <0 on error. */
static int sup_reap(struct brk_sup *s, int flags, int *code, int *status)
{
	siginfo_t si = {0};

	if (waitid((idtype_t)P_PIDFD, (id_t)s->pidfd, &si, WEXITED | flags) < 0)
		return -errno;
	if (si.si_pid == 0)
		return 0;
	*code = si.si_code;
	*status = si.si_status;
	return 1;
}

static void sup_on_exit(uv_poll_t *h, int status, int events)
{
	struct brk_sup *s = h->data;
	int code = 0, st = 0, r;

	(void)status;
	(void)events;
	if (s->exited)
		return;
	r = sup_reap(s, WNOHANG, &code, &st);
	if (r == 0)
		return; /* a spurious wakeup: the pidfd is readable only once it has exited */
	if (r < 0) {
		/* ECHILD: not our child (adopted after a restart: its parent, init or systemd, gets
		 * its status), or reaped by someone else. Gone either way, for a reason unknown. */
		code = 0;
		st = -1;
	}
	s->exited = true;
	s->awaiting = false;
	uv_poll_stop(&s->poll);
	uv_timer_stop(&s->timer);
	s->cfg.hooks->exited(s->cfg.ctx, code, st);
}

static void sup_send(struct brk_sup *s, uint64_t now)
{
	/* A heartbeat that could not even be sent (the worker stopped reading and its socket is
	 * full) counts as sent: the timeout then calls it hung, as it is. */
	if (s->cfg.hooks->send_heartbeat(s->cfg.ctx, s->seq + 1) == -ESHUTDOWN)
		return;
	s->seq++;
	s->sent_ms = now;
	s->awaiting = true;
	s->hung_reported = false;
}

static void sup_on_tick(uv_timer_t *t)
{
	struct brk_sup *s = t->data;
	uint64_t now = uv_now(t->loop);

	bool late;

	if (s->exited)
		return;
	/*
	 * A tick due long ago means the broker's own loop stood still (one large DMA map pins for
	 * seconds, more under TCG): an answer that arrived meanwhile is still unread in the
	 * worker's channel, because libuv runs timers before it polls for I/O. Judge no heartbeat
	 * on such a tick; the next one comes after the channel has been read. A worker that is
	 * really hung is declared so one tick later.
	 */
	late = now - s->last_tick_ms > 2 * s->tick_ms;
	s->last_tick_ms = now;
	if (s->awaiting) {
		if (late)
			return;
		if (!s->hung_reported && now - s->sent_ms >= s->cfg.timeout_ms) {
			s->hung_reported = true;
			s->cfg.hooks->hung(s->cfg.ctx, s->seq, now - s->sent_ms);
		}
		return;
	}
	if (now - s->sent_ms < s->cfg.interval_ms)
		return;
	sup_send(s, now);
}

/* Where heartbeat numbers start: random, so that no two broker instances (a restart adopting
 * a worker whose channel still holds its predecessor's answers) count alike. */
static uint64_t sup_first_seq(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = uv_hrtime() ^ ((uint64_t)getpid() << 32);
	return v;
}

int brk_sup_start(uv_loop_t *loop, pid_t pid, int pidfd, const struct brk_sup_cfg *cfg,
		  struct brk_sup **ret)
{
	struct brk_sup *s;
	uint64_t tick;
	int r;

	if (pidfd < 0 || pid <= 0 || !cfg->hooks || !cfg->hooks->exited ||
	    (cfg->interval_ms && (!cfg->hooks->send_heartbeat || !cfg->hooks->hung ||
				  cfg->timeout_ms <= cfg->interval_ms)))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pidfd = pidfd;
	s->pid = pid;
	s->cfg = *cfg;
	s->seq = sup_first_seq();
	r = uv_poll_init(loop, &s->poll, pidfd);
	if (r < 0) {
		free(s);
		return r;
	}
	uv_timer_init(loop, &s->timer);
	s->poll.data = s->timer.data = s;
	s->open_handles = 2;
	uv_poll_start(&s->poll, UV_READABLE, sup_on_exit);
	if (cfg->interval_ms) {
		/* Tick at half the interval or less so that a hang is seen within the timeout plus
		 * half an interval, not a whole one. */
		tick = cfg->interval_ms / 2 ? cfg->interval_ms / 2 : 1;
		uv_timer_start(&s->timer, sup_on_tick, tick, tick);
		s->tick_ms = tick;
		s->sent_ms = s->last_tick_ms = uv_now(loop);
		if (cfg->heartbeat_now)
			sup_send(s, s->sent_ms);
	}
	*ret = s;
	return 0;
}

int64_t brk_sup_heartbeat_answered(struct brk_sup *s, uint64_t seq)
{
	uint64_t now = uv_now(s->timer.loop);

	if (!s->awaiting || seq != s->seq)
		return -ESRCH;
	s->awaiting = false;
	return (int64_t)(now - s->sent_ms) * 1000;
}

void brk_sup_stop_heartbeats(struct brk_sup *s)
{
	uv_timer_stop(&s->timer);
	s->awaiting = false;
}

int brk_sup_kill(struct brk_sup *s)
{
	if (s->exited)
		return -ESRCH;
	return sup_pidfd_signal(s->pidfd, SIGKILL);
}

static void sup_closed(uv_handle_t *h)
{
	struct brk_sup *s = h->data;

	if (--s->open_handles == 0)
		free(s);
}

void brk_sup_free(struct brk_sup *s)
{
	int code, st;

	if (!s || s->freeing)
		return;
	s->freeing = true;
	if (!s->exited) {
		/* Blocking is bounded: SIGKILL cannot be caught, and the pidfd names our child (or
		 * one that is not, which waitid refuses at once with ECHILD: its parent reaps it).
		 */
		sup_pidfd_signal(s->pidfd, SIGKILL);
		sup_reap(s, 0, &code, &st);
		s->exited = true;
	}
	uv_close((uv_handle_t *)&s->poll, sup_closed);
	uv_close((uv_handle_t *)&s->timer, sup_closed);
	close(s->pidfd);
}
