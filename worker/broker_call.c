/*
 * broker_call: the worker's calls to the broker, each sent at once and completed later from the
 * loop (see broker_call.h). One timer, armed for the earliest deadline of the calls still
 * waited for, gives calls up; nothing here ever waits on the broker.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker_call.h"
#include "common.pb-c.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wkr_bcalls_init(struct wkr_bcalls *cs, int timeout_ms, wkr_bcall_outcome outcome, void *data)
{
	memset(cs, 0, sizeof(*cs));
	cs->timeout_ms = timeout_ms;
	cs->outcome = outcome;
	cs->data = data;
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the earliest deadline of the calls waited for, or stops it. */
static void arm(struct wkr_bcalls *cs)
{
	int64_t first = INT64_MAX, now;

	if (!cs->timer_open)
		return;
	for (size_t i = 0; i < cs->n; i++)
		if (!cs->tab[i].late && cs->tab[i].deadline < first)
			first = cs->tab[i].deadline;
	if (first == INT64_MAX) {
		uv_timer_stop(&cs->timer);
		return;
	}
	now = now_ms();
	uv_timer_start(&cs->timer, on_timer, first > now ? (uint64_t)(first - now) : 0, 0);
}

/* The call goes on in the channel (a restarted broker carries it out), but whoever waited is
 * told it failed (`why`, -ETIMEDOUT): from now on its answer only undoes what it did. */
static void give_up(struct wkr_bcalls *cs, struct wkr_bcall *c, const struct vb_err *why)
{
	struct wkr_defer *d = c->d;

	c->late = true;
	c->d = NULL;
	c->admit = NULL;
	cs->nlate++;
	(void)cs->outcome(cs->data, c, NULL, -ETIMEDOUT);
	if (d)
		wkr_defer_complete(d, -ETIMEDOUT, why);
}

static void on_timer(uv_timer_t *t)
{
	struct wkr_bcalls *cs = t->data;
	int64_t now = now_ms();
	struct vb_err why;

	vb_errf(&why, -ETIMEDOUT, "the broker did not answer in %d s (it may be restarting); retry",
		(cs->timeout_ms + 999) / 1000);
	/* Entries stay put here (only an answer removes one); a completion may append calls. */
	for (size_t i = 0; i < cs->n; i++)
		if (!cs->tab[i].late && cs->tab[i].deadline <= now)
			give_up(cs, &cs->tab[i], &why);
	arm(cs);
}

/* A fence sent as call `seq` was answered: every call sent before it that is still here will
 * never be answered (broker_call.h). */
static void cut_before(struct wkr_bcalls *cs, uint64_t seq)
{
	struct vb_err why;

	vb_errf(&why, -ETIMEDOUT,
		"the broker went away before it answered (a new one has attached); retry");
	/* Calls still waited for fail as on their timeout, and the owner does what it does then;
	 * calls appended meanwhile come after the fence. */
	for (size_t i = 0; i < cs->n; i++)
		if (cs->tab[i].seq < seq && !cs->tab[i].late)
			give_up(cs, &cs->tab[i], &why);
	for (size_t i = 0; i < cs->n;) {
		struct wkr_bcall c = cs->tab[i];

		if (c.seq >= seq) {
			i++;
			continue;
		}
		cs->tab[i] = cs->tab[--cs->n];
		cs->nlate--;
		(void)ipc_chan_forget(cs->chan, c.id);
		(void)cs->outcome(cs->data, &c, NULL, -ECANCELED);
	}
}

int wkr_bcalls_start(struct wkr_bcalls *cs, uv_loop_t *loop)
{
	int r = uv_timer_init(loop, &cs->timer);

	if (r < 0)
		return r;
	cs->timer.data = cs;
	cs->timer_open = true;
	arm(cs);
	return 0;
}

void wkr_bcalls_close(struct wkr_bcalls *cs, void (*closed)(uv_handle_t *h))
{
	if (cs->timer_open) {
		cs->timer_open = false;
		uv_close((uv_handle_t *)&cs->timer, closed);
	} else {
		closed((uv_handle_t *)&cs->timer);
	}
}

int wkr_bcall_send(struct wkr_bcalls *cs, struct ipc_chan *chan, uint16_t type,
		   const ProtobufCMessage *body, const int *fds, size_t nfds,
		   const struct wkr_bcall *meta, struct vb_err *err)
{
	bool fence = meta && meta->fence;
	struct wkr_bcall *c;
	uint32_t id;
	int r;

	if (!fence && cs->nlate >= WKR_BCALLS_LATE_MAX)
		return vb_errf(err, -EBUSY,
			       "broker: %zu calls went unanswered (is a broker there?); retry",
			       cs->nlate);
	if (cs->n >= WKR_BCALLS_MAX - (fence ? 0 : WKR_BCALLS_FENCE_ROOM))
		return vb_errf(err, -EBUSY, "broker: %zu calls are in flight; retry", cs->n);
	r = ipc_chan_request(chan, type, body, fds, nfds, &id);
	if (r < 0)
		return vb_errf(err, r, "broker: cannot send the request: %s", strerror(-r));
	cs->chan = chan;
	c = &cs->tab[cs->n++];
	*c = meta ? *meta : (struct wkr_bcall){.undo = WKR_UNDO_NOTHING};
	c->id = id;
	c->type = type;
	c->seq = cs->sent++;
	c->deadline = now_ms() + cs->timeout_ms;
	c->late = false;
	c->d = cs->collect;
	if (c->d)
		wkr_defer_add(c->d);
	arm(cs);
	return 0;
}

bool wkr_bcall_answer(struct wkr_bcalls *cs, struct ipc_msg *m)
{
	struct vb_err why = {0};
	struct wkr_bcall c;
	size_t i = 0;
	int err = 0;

	while (i < cs->n && (cs->tab[i].id != m->id || cs->tab[i].type != m->type))
		i++;
	if (i == cs->n)
		return false;
	c = cs->tab[i];
	cs->tab[i] = cs->tab[--cs->n];
	if (c.late)
		cs->nlate--;
	if (m->kind == IPC_KIND_ERROR) {
		const Vb__Error *e = (const Vb__Error *)m->body;

		err = e->code > 0 && e->code < 4096 ? -(int)e->code : -EIO;
		vb_errf(&why, err, "broker: %.180s",
			e->message && e->message[0] ? e->message : strerror(-err));
	}
	err = cs->outcome(cs->data, &c, m, err);
	if (c.d)
		wkr_defer_complete(c.d, err, err < 0 ? &why : NULL);
	/* Late or not, error or not: it was read and answered in order. */
	if (c.fence)
		cut_before(cs, c.seq);
	arm(cs);
	return true;
}

void wkr_bcall_fail_all(struct wkr_bcalls *cs)
{
	struct vb_err why;

	vb_errf(&why, -EPIPE, "broker channel closed");
	/* One at a time, taken out first: a completion may cancel other defers (forget) or try
	 * to send more, which the closed channel refuses. */
	while (cs->n) {
		struct wkr_bcall c = cs->tab[--cs->n];

		if (c.late)
			cs->nlate--;
		(void)cs->outcome(cs->data, &c, NULL, -EPIPE);
		if (c.d)
			wkr_defer_complete(c.d, -EPIPE, &why);
	}
	arm(cs);
}

void wkr_bcall_forget(struct wkr_bcalls *cs, struct wkr_defer *d)
{
	for (size_t i = 0; i < cs->n; i++) {
		if (cs->tab[i].d != d)
			continue;
		cs->tab[i].d = NULL;
		cs->tab[i].admit = NULL;
	}
}
