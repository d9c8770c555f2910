/*
 * pool: the pre-started workers (pool.h). Responsible for never waiting on a child from the
 * loop (the spawn's second half runs when its report pipe is readable; a dead pooled worker is
 * reaped when its pidfd says so), for picking uids that no other worker of this broker holds,
 * and for not spinning when spawns fail (a backoff of 1 s, doubling to 60 s, reset by the next
 * worker that exec'd). Trusts spawn.c and policy/sandbox.c for the sandbox itself.
 */
#include "pool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "spawn.h"

/* What a worker gets to exec in before it is given up (sbx_spawn_worker()'s bound). */
#define POOL_SPAWN_TIMEOUT_MS 5000
#define POOL_BACKOFF_MIN_MS   1000
#define POOL_BACKOFF_MAX_MS   60000
/* How long a refill after a take waits for brk_pool_kick() (the hot-plug that took the worker
 * is done) at most. */
#define POOL_REFILL_DELAY_MS 1000
/* How long a refill waits after brk_pool_kick(): the worker tells the broker that its VMM is
 * in when it has admitted it, before it answers the VMM's HELLO, so the hot-plug is not quite
 * done yet. Begun at once, the refill's spawn took the CPU from that answer (in the 1-vCPU test
 * guest the handshake went from 3 to 12 ms, bench/README.md, P4); the answer takes
 * microseconds on hardware and a few milliseconds under TCG. */
#define POOL_KICK_DELAY_MS 100

enum pool_ent_state {
	ENT_STARTING, /* released, not exec'd yet: spawn_poll watches its report pipe */
	ENT_READY,    /* exec'd, waiting for its HANDOFF: exit_poll watches its pidfd */
	ENT_GONE,     /* taken or dropped; its handles are closing */
};

struct pool_ent {
	struct brk_pool *pool;
	struct pool_ent *next;
	enum pool_ent_state state;
	struct sbx_pending pend; /* pid, pidfd, report_fd (-1 once exec'd) */
	int chan_fd;
	uid_t uid;
	gid_t gid;
	uint64_t begun_ns;
	uv_poll_t spawn_poll, exit_poll;
	uv_timer_t timer;
	int open; /* handles not closed yet */
};

struct brk_pool {
	uv_loop_t *loop;
	const struct brk_config *cfg;
	brk_pool_uid_used_fn uid_used;
	void *ctx;
	struct pool_ent *ents;
	unsigned ready, starting;
	bool draining, freeing, timer_closed;
	bool backing_off; /* the fill timer runs a failure's backoff */
	uv_timer_t fill_timer;
	uint32_t backoff_ms;
	uint64_t taken, failed, lost, last_spawn_ns;
};

static uint64_t pool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pool_fill(struct brk_pool *p);

static void pool_fill_cb(uv_timer_t *t)
{
	struct brk_pool *p = t->data;

	p->backing_off = false;
	pool_fill(p);
}

enum pool_when {
	FILL_NOW,      /* the loop's next iteration */
	FILL_LATER,    /* after a take: at brk_pool_kick(), or POOL_REFILL_DELAY_MS */
	FILL_SOON,     /* after brk_pool_kick(): POOL_KICK_DELAY_MS */
	FILL_BACK_OFF, /* after a failure: the backoff, doubled each time */
};

/* The next fill. A failure's backoff is not shortened by anything but a successful exec. */
static void pool_schedule(struct brk_pool *p, enum pool_when when)
{
	uint64_t delay = 0;

	if (p->draining)
		return;
	if (when == FILL_BACK_OFF) {
		delay = p->backoff_ms;
		p->backoff_ms = p->backoff_ms * 2 > POOL_BACKOFF_MAX_MS ? POOL_BACKOFF_MAX_MS
									: p->backoff_ms * 2;
		p->backing_off = true;
	} else if (p->backing_off && uv_is_active((uv_handle_t *)&p->fill_timer)) {
		return;
	} else if (when == FILL_LATER || when == FILL_SOON) {
		delay = when == FILL_LATER ? POOL_REFILL_DELAY_MS : POOL_KICK_DELAY_MS;
		/* An earlier fill stays as soon as it was. */
		if (uv_is_active((uv_handle_t *)&p->fill_timer) &&
		    uv_timer_get_due_in(&p->fill_timer) <= delay)
			return;
	}
	uv_timer_start(&p->fill_timer, pool_fill_cb, delay, 0);
}

static void pool_ent_closed(uv_handle_t *h)
{
	struct pool_ent *e = h->data;
	struct brk_pool *p = e->pool;
	struct pool_ent **pp;

	if (--e->open > 0)
		return;
	for (pp = &p->ents; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	free(e);
	if (p->freeing && !p->ents && p->timer_closed)
		free(p);
}

/* Stops watching the entry and closes its handles; its fds are the caller's business. */
static void pool_ent_close(struct pool_ent *e)
{
	struct brk_pool *p = e->pool;

	if (e->state == ENT_STARTING)
		p->starting--;
	else if (e->state == ENT_READY)
		p->ready--;
	e->state = ENT_GONE;
	uv_poll_stop(&e->spawn_poll);
	uv_poll_stop(&e->exit_poll);
	uv_timer_stop(&e->timer);
	uv_close((uv_handle_t *)&e->spawn_poll, pool_ent_closed);
	uv_close((uv_handle_t *)&e->exit_poll, pool_ent_closed);
	uv_close((uv_handle_t *)&e->timer, pool_ent_closed);
}

/* Ends the entry's worker (killed if alive, reaped) and forgets it. */
static void pool_ent_drop(struct pool_ent *e)
{
	pool_ent_close(e);
	if (e->chan_fd >= 0)
		close(e->chan_fd);
	e->chan_fd = -1;
	sbx_spawn_abort(&e->pend);
}

static void pool_on_exit(uv_poll_t *h, int status, int events)
{
	struct pool_ent *e = h->data;
	struct brk_pool *p = e->pool;

	(void)status;
	(void)events;
	if (e->state != ENT_READY)
		return;
	/* Nothing of a VM was in it; a replacement is started after the backoff, so that a worker
	 * that cannot wait (a broken binary, a handoff timeout) is not restarted in a loop. */
	brk_warn("pre-started worker %d (uid %u) ended before it was used: starting another",
		 (int)e->pend.pid, (unsigned)e->uid);
	p->lost++;
	pool_ent_drop(e);
	pool_schedule(p, FILL_BACK_OFF);
}

static void pool_on_report(uv_poll_t *h, int status, int events)
{
	struct pool_ent *e = h->data;
	struct brk_pool *p = e->pool;
	struct sbx_spawn_error serr = {0};
	int r;

	(void)status;
	(void)events;
	if (e->state != ENT_STARTING)
		return;
	r = sbx_spawn_end(&e->pend, &serr);
	if (r == -EAGAIN)
		return;
	uv_poll_stop(&e->spawn_poll);
	uv_timer_stop(&e->timer);
	if (r < 0) {
		brk_err("pre-starting a worker as uid %u failed: %s: %s", (unsigned)e->uid,
			serr.step, strerror(-r));
		p->failed++;
		pool_ent_drop(e);
		pool_schedule(p, FILL_BACK_OFF);
		return;
	}
	p->last_spawn_ns = pool_now_ns() - e->begun_ns;
	p->backoff_ms = POOL_BACKOFF_MIN_MS;
	e->state = ENT_READY;
	p->starting--;
	p->ready++;
	uv_poll_start(&e->exit_poll, UV_READABLE, pool_on_exit);
	brk_debug("pre-started worker %d as uid %u in %.1f ms", (int)e->pend.pid, (unsigned)e->uid,
		  (double)p->last_spawn_ns / 1e6);
}

static void pool_on_timeout(uv_timer_t *t)
{
	struct pool_ent *e = t->data;
	struct brk_pool *p = e->pool;

	if (e->state != ENT_STARTING)
		return;
	brk_err("pre-starting a worker as uid %u failed: it did not exec within %d ms",
		(unsigned)e->uid, POOL_SPAWN_TIMEOUT_MS);
	p->failed++;
	pool_ent_drop(e);
	pool_schedule(p, FILL_BACK_OFF);
}

bool brk_pool_uid_taken(const struct brk_pool *p, uid_t uid)
{
	if (!p)
		return false;
	for (const struct pool_ent *e = p->ents; e; e = e->next)
		if (e->state != ENT_GONE && e->uid == uid)
			return true;
	return false;
}

int brk_pool_pick_uid(const struct brk_pool *p, const struct brk_config *c,
		      brk_pool_uid_used_fn used, void *ctx, uid_t *uid, gid_t *gid)
{
	if (c->worker_user_set) {
		*uid = c->worker_uid_first;
		*gid = c->worker_gid;
		return 0;
	}
	for (uint64_t u = c->worker_uid_first; u <= c->worker_uid_last; u++) {
		if (brk_pool_uid_taken(p, (uid_t)u) || (used && used(ctx, (uid_t)u)))
			continue;
		*uid = (uid_t)u;
		*gid = (gid_t)u;
		return 0;
	}
	return -EUSERS;
}

/* Begins one spawn. 0, -EUSERS (no uid left: not a failure, the devices have them all), or
 * another negative errno (logged). */
static int pool_start_one(struct brk_pool *p)
{
	struct vb_err err = {0};
	struct pool_ent *e;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->pool = p;
	e->chan_fd = -1;
	e->pend = (struct sbx_pending){.pid = -1, .pidfd = -1, .report_fd = -1};
	r = brk_pool_pick_uid(p, p->cfg, p->uid_used, p->ctx, &e->uid, &e->gid);
	if (r < 0) {
		free(e);
		return r;
	}
	e->begun_ns = pool_now_ns();
	r = brk_spawn_prestart_begin(p->cfg, e->uid, e->gid, &e->pend, &e->chan_fd, &err);
	if (r < 0) {
		brk_err("pre-starting a worker: %s", err.msg);
		free(e);
		return r;
	}
	if (uv_poll_init(p->loop, &e->spawn_poll, e->pend.report_fd) < 0 ||
	    uv_poll_init(p->loop, &e->exit_poll, e->pend.pidfd) < 0) {
		/* Cannot happen for a pipe and a pidfd; if it did, the handles are not closable. */
		brk_err("pre-starting a worker: cannot watch it");
		close(e->chan_fd);
		sbx_spawn_abort(&e->pend);
		free(e);
		return -EIO;
	}
	uv_timer_init(p->loop, &e->timer);
	e->spawn_poll.data = e->exit_poll.data = e->timer.data = e;
	e->open = 3;
	e->state = ENT_STARTING;
	e->next = p->ents;
	p->ents = e;
	p->starting++;
	uv_poll_start(&e->spawn_poll, UV_READABLE, pool_on_report);
	uv_timer_start(&e->timer, pool_on_timeout, POOL_SPAWN_TIMEOUT_MS, 0);
	return 0;
}

static void pool_fill(struct brk_pool *p)
{
	while (!p->draining && p->ready + p->starting < p->cfg->prestart) {
		int r = pool_start_one(p);

		if (r == -EUSERS)
			return; /* a device's worker that ends gives its uid back; the next take
				   fills */
		if (r < 0) {
			p->failed++;
			pool_schedule(p, FILL_BACK_OFF);
			return;
		}
	}
}

int brk_pool_new(uv_loop_t *loop, const struct brk_config *cfg, brk_pool_uid_used_fn uid_used,
		 void *ctx, struct brk_pool **ret)
{
	struct brk_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->cfg = cfg;
	p->uid_used = uid_used;
	p->ctx = ctx;
	p->backoff_ms = POOL_BACKOFF_MIN_MS;
	uv_timer_init(loop, &p->fill_timer);
	p->fill_timer.data = p;
	/* From the loop's first iteration: after an adoption has said which uids are in use. */
	if (cfg->prestart)
		pool_schedule(p, FILL_NOW);
	*ret = p;
	return 0;
}

int brk_pool_take(struct brk_pool *p, struct brk_pool_proc *ret)
{
	struct pool_ent *e;

	if (!p || p->draining)
		return -ENOENT;
	for (e = p->ents; e; e = e->next)
		if (e->state == ENT_READY)
			break;
	/* None ready: the pool is behind, fill it now. One taken: its replacement waits until the
	 * hot-plug it serves is done (brk_pool_kick), so as not to take the CPU from it. */
	if (p->cfg->prestart)
		pool_schedule(p, e ? FILL_LATER : FILL_NOW);
	if (!e)
		return -ENOENT;
	*ret = (struct brk_pool_proc){.pid = e->pend.pid,
				      .pidfd = e->pend.pidfd,
				      .chan_fd = e->chan_fd,
				      .uid = e->uid,
				      .gid = e->gid};
	e->pend.pidfd = -1;
	e->chan_fd = -1;
	p->taken++;
	pool_ent_close(e);
	return 0;
}

void brk_pool_drain(struct brk_pool *p)
{
	if (!p)
		return;
	p->draining = true;
	uv_timer_stop(&p->fill_timer);
	for (struct pool_ent *e = p->ents; e; e = e->next)
		if (e->state != ENT_GONE)
			pool_ent_drop(e);
}

void brk_pool_resume(struct brk_pool *p)
{
	if (!p || p->freeing)
		return;
	p->draining = false;
	if (p->cfg->prestart)
		pool_schedule(p, FILL_NOW);
}

void brk_pool_kick(struct brk_pool *p)
{
	if (p && !p->draining && p->cfg->prestart && p->ready + p->starting < p->cfg->prestart)
		pool_schedule(p, FILL_SOON);
}

static void pool_timer_closed(uv_handle_t *h)
{
	struct brk_pool *p = h->data;

	p->timer_closed = true;
	if (!p->ents)
		free(p);
}

void brk_pool_free(struct brk_pool *p)
{
	if (!p)
		return;
	brk_pool_drain(p);
	p->freeing = true;
	uv_close((uv_handle_t *)&p->fill_timer, pool_timer_closed);
}

void brk_pool_metrics(const struct brk_pool *p, FILE *f)
{
	fprintf(f,
		"# HELP vfio_broker_pool_size Pre-started workers configured ([worker] "
		"prestart).\n"
		"# TYPE vfio_broker_pool_size gauge\nvfio_broker_pool_size %u\n"
		"# HELP vfio_broker_pool_ready Pre-started workers waiting for a device.\n"
		"# TYPE vfio_broker_pool_ready gauge\nvfio_broker_pool_ready %u\n"
		"# HELP vfio_broker_pool_starting Pre-started workers not exec'd yet.\n"
		"# TYPE vfio_broker_pool_starting gauge\nvfio_broker_pool_starting %u\n"
		"# HELP vfio_broker_pool_taken_total Devices given a pre-started worker.\n"
		"# TYPE vfio_broker_pool_taken_total counter\nvfio_broker_pool_taken_total %llu\n"
		"# HELP vfio_broker_pool_failed_total Pre-starts that failed.\n"
		"# TYPE vfio_broker_pool_failed_total counter\nvfio_broker_pool_failed_total %llu\n"
		"# HELP vfio_broker_pool_lost_total Pre-started workers that ended unused.\n"
		"# TYPE vfio_broker_pool_lost_total counter\nvfio_broker_pool_lost_total %llu\n"
		"# HELP vfio_broker_pool_last_spawn_seconds The last pre-start, until its exec.\n"
		"# TYPE vfio_broker_pool_last_spawn_seconds gauge\n"
		"vfio_broker_pool_last_spawn_seconds %.6f\n",
		p ? p->cfg->prestart : 0, p ? p->ready : 0, p ? p->starting : 0,
		(unsigned long long)(p ? p->taken : 0), (unsigned long long)(p ? p->failed : 0),
		(unsigned long long)(p ? p->lost : 0), p ? (double)p->last_spawn_ns / 1e9 : 0.0);
}
