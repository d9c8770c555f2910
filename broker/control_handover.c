/*
 * control_handover: the control server's part in a re-exec. Responsible for the drain (stop
 * accepting and reading requests, answer those in flight and send their answers, bounded, then
 * end the sessions still busy), for handing every open session's connection to the fd store
 * under a name that says whether it subscribed (ctl.sess.N, ctl.sub.N), for taking them back
 * when the exec fails, and for the new image's adoption of them. Trusts the fd store's names
 * only as far as their form: an adopted connection is admitted again from its credentials like
 * a new one (control.c).
 */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control_priv.h"
#include "fdstore.h"
#include "ipc.h"
#include "ipc_uv.h"

/* A session with nothing in flight: no call of it unanswered, no reply waiting to be sent. */
static bool ctl_sess_idle(const struct ctl_sess *s)
{
	return !s->inflight && !ipc_chan_out_pending(ipc_uv_chan(s->u));
}

static void ctl_drain_timer_closed(uv_handle_t *h)
{
	free(h);
}

void brk_ctl__drain_stop(struct brk_ctl *ctl)
{
	if (!ctl->drain.timer)
		return;
	uv_close((uv_handle_t *)ctl->drain.timer, ctl_drain_timer_closed);
	ctl->drain.timer = NULL;
}

static void ctl_drain_check(uv_timer_t *t)
{
	struct brk_ctl *ctl = t->data;
	bool over = uv_now(ctl->loop) >= ctl->drain.deadline_ms;
	struct ctl_sess *s, *next;
	unsigned dropped = 0;

	for (s = ctl->sessions; s; s = s->next)
		if (!ctl_sess_idle(s) && !over)
			return;
	for (s = ctl->sessions; s; s = next) {
		next = s->next;
		if (ctl_sess_idle(s))
			continue;
		dropped++;
		brk_ctl__sess_end(s, s->inflight ? "its request did not finish before the re-exec"
						 : "it did not read its reply before the re-exec");
	}
	brk_ctl__drain_stop(ctl);
	ctl->drain.done(ctl->drain.data, dropped);
}

int brk_ctl_drain(struct brk_ctl *ctl, unsigned bound_ms,
		  void (*done)(void *data, unsigned dropped), void *data)
{
	uv_timer_t *t;

	if (ctl->drain.timer || ctl->freeing)
		return -EBUSY;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	uv_timer_init(ctl->loop, t);
	t->data = ctl;
	ctl->drain.timer = t;
	ctl->drain.deadline_ms = uv_now(ctl->loop) + bound_ms;
	ctl->drain.done = done;
	ctl->drain.data = data;
	uv_poll_stop(&ctl->listen);
	for (struct ctl_sess *s = ctl->sessions; s; s = s->next)
		ipc_uv_pause(s->u, true);
	/* Checked from the loop, never from here: done() may exec. A poll, because a reply
	 * leaves the send queue without telling anyone; cheap, and only during a re-exec. */
	uv_timer_start(t, ctl_drain_check, 0, 10);
	return 0;
}

static void ctl_handover_name(char *buf, size_t len, const struct ctl_sess *s, unsigned i)
{
	snprintf(buf, len, "ctl.%s.%u", s->state == CTL_SUBSCRIBED ? "sub" : "sess", i);
}

int brk_ctl_handover(struct brk_ctl *ctl, struct brk_fdstore *store)
{
	char name[32];
	unsigned i = 0;
	int r;

	for (struct ctl_sess *s = ctl->sessions; s; s = s->next, i++) {
		ctl_handover_name(name, sizeof(name), s, i);
		r = brk_fdstore_put_local(store, name, ipc_chan_fd(ipc_uv_chan(s->u)));
		if (r < 0) {
			brk_ctl_resume(ctl, store);
			return r;
		}
	}
	return (int)i;
}

void brk_ctl_resume(struct brk_ctl *ctl, struct brk_fdstore *store)
{
	char name[32];
	unsigned i = 0;

	brk_ctl__drain_stop(ctl);
	for (struct ctl_sess *s = ctl->sessions; s; s = s->next, i++) {
		ctl_handover_name(name, sizeof(name), s, i);
		if (store)
			(void)brk_fdstore_remove(store, name);
		ipc_uv_pause(s->u, false);
	}
	if (!ctl->freeing)
		(void)uv_poll_start(&ctl->listen, UV_READABLE, brk_ctl__on_listen);
}

int brk_ctl_adopt(struct brk_ctl *ctl, const char *name, int fd)
{
	bool sub = strncmp(name, "ctl.sub.", 8) == 0;
	int r;

	if (!sub && strncmp(name, "ctl.sess.", 9) != 0) {
		close(fd);
		return -EINVAL;
	}
	r = brk_ctl__sess_start(ctl, fd);
	if (r < 0)
		return r;
	/* Its subscription goes on (the events of the exec's own instant are not sent). */
	if (sub && ctl->sessions && ipc_chan_fd(ipc_uv_chan(ctl->sessions->u)) == fd &&
	    ctl->sessions->state == CTL_ADMIN)
		ctl->sessions->state = CTL_SUBSCRIBED;
	return 0;
}
