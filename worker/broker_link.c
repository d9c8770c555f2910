/*
 * broker_link: the broker channel of a worker in broker mode, and its life. Serves the
 * broker's requests from the loop (HEARTBEAT, REMOVAL; a HANDOFF after the first is refused)
 * and hands the answers to the worker's own calls to broker_call.c. The HANDOFF itself is
 * broker_handoff.c's; the calls the emulation makes, and the undoing of what a call given up on
 * did after all, are broker_ops.c's.
 *
 * A broker may restart under a running worker (issue 12). A heartbeat of a new broker (its
 * epoch differs) makes the worker re-attach: re-send its VMM state and the routing of every
 * index whose SET_IRQS failed or went unanswered since, after a fence (SYNC, when the broker
 * answers it) whose answer lets go of the calls the last broker read and never answered
 * (kick_run). A routing is re-sent as "off, then on", so every VMM request is held until both
 * are answered.
 *
 * REMOVAL while a VMM request waits for the broker: served at once. The VMM hears the removal
 * event before the deferred reply; its REMOVAL_ACK, a request, is read after that reply (the
 * session's order), and the removal timeout runs meanwhile. If the channel ends, every call
 * fails with "broker channel closed" (the waiting VMM gets that error) before the worker ends.
 *
 * Trusts the broker more than the VMM (it is the privileged side): its requests are checked
 * for their type only, their bodies by ipc's protobuf decoding.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "broker.pb-c.h"
#include "broker_link_internal.h"
#include "common.pb-c.h"
#include "ipc_uv.h"
#include "vfu.h"

struct ipc_chan *wkr_broker__chan(struct wkr_broker *b)
{
	return b->u ? ipc_uv_chan(b->u) : b->chan;
}

static void resync_done(struct wkr_defer *d);

int wkr_broker_new(struct ipc_chan *chan, struct wkr_broker **ret)
{
	struct wkr_broker *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->chan = chan;
	b->resync.done = resync_done;
	b->resync.data = b;
	wkr_bcalls_init(&b->calls, WKR_BROKER_CALL_TIMEOUT_MS, wkr_broker__outcome, b);
	*ret = b;
	return 0;
}

void wkr_broker_set_call_timeout(struct wkr_broker *b, int timeout_ms)
{
	b->calls.timeout_ms = timeout_ms;
}

void wkr_broker_set_note(struct wkr_broker *b, void (*note)(void *data, const char *line))
{
	b->note = note;
}

static void handle_closed(struct wkr_broker *b)
{
	if (--b->open_handles == 0)
		free(b);
}

static void kick_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void calls_closed(uv_handle_t *h)
{
	handle_closed(container_of((struct wkr_bcalls *)h->data, struct wkr_broker, calls));
}

void wkr_broker_free(struct wkr_broker *b)
{
	if (!b)
		return;
	ipc_msg_free(b->handoff);
	ipc_msg_free(b->removal);
	wkr_held_free(&b->held);
	/* The servers go with the worker: a pending re-send lets go of nothing. */
	wkr_bcall_forget(&b->calls, &b->resync);
	if (b->u)
		ipc_uv_close(b->u, NULL);
	else
		ipc_chan_free(b->chan);
	/* The memory goes with the timers' handles, once libuv has let go of them. */
	b->open_handles = 2;
	b->calls.timer.data = &b->calls;
	wkr_bcalls_close(&b->calls, calls_closed);
	if (b->kick_open)
		uv_close((uv_handle_t *)&b->kick, kick_closed);
	else
		handle_closed(b);
}

void wkr_broker__note(struct wkr_broker *b, const char *fmt, ...)
{
	char line[300];
	va_list ap;

	if (!b->note)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	b->note(b->gone_data, line);
}

static void kick_run(uv_timer_t *t);

void wkr_broker__kick(struct wkr_broker *b)
{
	if (b->kick_open)
		uv_timer_start(&b->kick, kick_run, 0, 0);
}

/* ---- the broker's requests ---------------------------------------------------------------- */

static void removal_done(void *data, bool acked)
{
	struct wkr_broker *b = data;
	Vb__Brk__RemovalReply rep = VB__BRK__REMOVAL_REPLY__INIT;

	rep.vmm_acknowledged = acked;
	if (b->removal)
		(void)ipc_chan_reply(wkr_broker__chan(b), b->removal, &rep.base, NULL, 0);
	ipc_msg_free(b->removal);
	b->removal = NULL;
}

static void on_heartbeat(struct wkr_broker *b, struct ipc_msg *m)
{
	const Vb__Brk__Heartbeat *hb = (const Vb__Brk__Heartbeat *)m->body;
	Vb__Brk__HeartbeatReply rep = VB__BRK__HEARTBEAT_REPLY__INIT;

	rep.seq = hb->seq;
	rep.vmm_connected = wkr_server_connected(b->srv) || wkr_vfu_connected(b->vfu);
	rep.requests_served = wkr_server_requests(b->srv) + wkr_vfu_requests(b->vfu);
	rep.interrupts_pending = wkr_irq_pending(b->dev);
	(void)ipc_chan_reply(wkr_broker__chan(b), m, &rep.base, NULL, 0);
	if (hb->epoch == 0 || hb->epoch == b->epoch)
		return;
	/* Another broker instance has adopted us (the first one we hear of counts only when the
	 * handoff did not say). */
	if (b->epoch) {
		wkr_broker__note(
		    b, "a new broker (epoch %016llx) has adopted the device: re-attaching",
		    (unsigned long long)hb->epoch);
		b->reattach = true;
		/* What the last broker read and never answered is let go of once this one has
		 * answered everything before the fence. */
		b->fence_owed = hb->answers_sync;
		wkr_broker__kick(b);
	}
	b->epoch = hb->epoch;
}

/* A request of the broker other than a heartbeat; owns `m`. */
static void dispatch(struct wkr_broker *b, struct ipc_msg *m)
{
	uint32_t ms;

	switch (m->type) {
	case VB__BRK__TYPE__REMOVAL:
		if (b->removal) {
			(void)ipc_chan_reply_error(wkr_broker__chan(b), m, -EBUSY,
						   "a removal is pending");
			break;
		}
		b->removal = m;
		m = NULL;
		ms = ((const Vb__Brk__Removal *)b->removal->body)->timeout_ms;
		/* Whichever protocol's VMM holds the device is asked. */
		if (wkr_vfu_connected(b->vfu))
			(void)wkr_vfu_removal(b->vfu, ms, removal_done, b);
		else if (b->srv)
			(void)wkr_server_removal(b->srv, ms, removal_done, b);
		else
			removal_done(b, false);
		break;
	case VB__BRK__TYPE__HANDOFF:
		(void)ipc_chan_reply_error(wkr_broker__chan(b), m, -EALREADY,
					   "the worker has its device");
		break;
	default:
		(void)ipc_chan_reply_error(wkr_broker__chan(b), m, -EOPNOTSUPP,
					   "the worker does not serve type %u", m->type);
		break;
	}
	ipc_msg_free(m);
}

/* Whatever the broker sent; owns `m`. */
static void handle(struct wkr_broker *b, struct ipc_msg *m)
{
	if (m->kind == IPC_KIND_REPLY || m->kind == IPC_KIND_ERROR) {
		/* An answer that matches no call: the channel checked its id; nothing to do. */
		(void)wkr_bcall_answer(&b->calls, m);
	} else if (m->kind == IPC_KIND_REQUEST && m->type == VB__BRK__TYPE__HEARTBEAT) {
		on_heartbeat(b, m);
	} else if (m->kind == IPC_KIND_REQUEST) {
		dispatch(b, m);
		return;
	}
	ipc_msg_free(m);
}

/* Holds or lets go of every VMM request, of both protocols. */
static void hold(struct wkr_broker *b, bool held)
{
	wkr_server_hold(b->srv, held);
	wkr_vfu_hold(b->vfu, held);
}

/* The re-sent routing is in the kernel (or its calls failed, which left their indexes in
 * doubt for the next attempt): VMM requests go on, and what came up meanwhile is re-sent. */
static void resync_done(struct wkr_defer *d)
{
	struct wkr_broker *b = d->data;

	hold(b, false);
	if (b->reattach || b->irq_resync || b->fence_owed)
		wkr_broker__kick(b);
}

/* From the loop: what a new broker or a late answer asked for. An index's routing is sent
 * again as "off, then on" (wkr_irq_resync): the calls are not waited for, so the servers are
 * held until both are answered; otherwise a VMM access between the two could raise an
 * interrupt while the index is off, and it would be lost (the synchronous calls of old held
 * the loop instead). */
static void kick_run(uv_timer_t *t)
{
	struct wkr_broker *b = t->data;
	struct wkr_defer *collect;

	/* First, and even while a re-sent routing waits: its calls may be among those the last
	 * broker read, which the fence ends at once instead of at their timeout. */
	if (b->fence_owed)
		wkr_broker__send_fence(b);
	if (b->resync.waiting)
		return; /* resync_done() comes back here */
	if (b->reattach) {
		b->reattach = false;
		if (b->vmm.known)
			wkr_broker__send_vmm_state(b);
		/* Maps the VMM was told failed whose unmap could not be sent when they timed out.
		 */
		wkr_broker__undo_late_maps(b);
		b->irq_resync |= b->irq_dirty;
		b->irq_dirty = 0;
	}
	if (!b->irq_resync || !b->dev)
		return;
	collect = b->calls.collect;
	wkr_defer_begin(&b->resync, NULL, true);
	b->calls.collect = &b->resync;
	while (b->irq_resync && b->dev) {
		uint32_t index = (uint32_t)__builtin_ctz(b->irq_resync);
		int r;

		b->irq_resync &= ~(1u << index);
		r = wkr_irq_resync(b->dev, index);
		if (r < 0) {
			wkr_broker__note(b, "sending the routing of IRQ index %u again failed: %s",
					 index, strerror(-r));
			b->irq_dirty |= 1u << index;
		}
	}
	b->calls.collect = collect;
	if (wkr_defer_end(&b->resync))
		hold(b, true);
}

static void on_broker(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct wkr_broker *b = data;

	if (!m) {
		/* Whoever waits for a call hears the channel ended before the worker does. */
		wkr_bcall_fail_all(&b->calls);
		b->gone(b->gone_data, err);
		return;
	}
	handle(b, m);
}

int wkr_broker_start(struct wkr_broker *b, uv_loop_t *loop, struct wkr_server *srv,
		     struct wkr_vfu *vfu, struct wkr_dev *dev, void (*gone)(void *data, int err),
		     void *data)
{
	int r;

	b->srv = srv;
	b->vfu = vfu;
	b->dev = dev;
	b->gone = gone;
	b->gone_data = data;
	r = uv_timer_init(loop, &b->kick);
	if (r < 0)
		return r;
	b->kick.data = b;
	b->kick_open = true;
	r = wkr_bcalls_start(&b->calls, loop);
	if (r < 0)
		return r;
	r = ipc_uv_start(loop, b->chan, on_broker, b, &b->u);
	if (r == 0)
		b->chan = NULL;
	return r;
}
