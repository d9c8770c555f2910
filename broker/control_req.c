/*
 * control_req: the control server's request table. Responsible for the table that says which
 * request is allowed in which session state (ctl_table[]: anything unknown or out of order ends
 * the session, a refused peer's first request is answered EPERM), for bounding the requests in
 * flight on a session, for the shape checks every body passes before the daemon sees it
 * (canonical BDF, VM name, ids, bounds), for completing each call exactly once (a reply too
 * large for a datagram becomes an error the peer can read; a peer that does not read loses its
 * session) and for the request metrics. Trusts the session's admission (control.c) and the
 * daemon (brk_ctl_ops) to complete every call it accepted exactly once.
 */
#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "bdf.h"
#include "common.pb-c.h"
#include "control_priv.h"
#include "dispatch.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"

typedef int (*ctl_handler_fn)(struct ctl_sess *s, struct brk_ctl_call *call);

/* req.when: enum ctl_state bits in which the request is allowed. */
struct ctl_handler {
	struct vb_req req;
	ctl_handler_fn fn;
};

/* ---- calls ------------------------------------------------------------------------------- */

/* A reply the peer's socket could not take went to the channel's bounded send queue; one that
 * would overflow it means the peer does not read: it is disconnected, never waited for. */
static void ctl_send_failed(struct ctl_sess *s, int r)
{
	if (r == -EOVERFLOW) {
		s->ctl->send_overflows++;
		brk_warn("control: disconnecting pid %d uid %u: it does not read its replies (send "
			 "queue over budget)",
			 (int)s->pid, (unsigned)s->uid);
	} else if (r != -EPIPE && r != -ECONNRESET) {
		brk_log_errno(LOG_WARNING, r, "control: pid %d uid %u: cannot send reply",
			      (int)s->pid, (unsigned)s->uid);
	}
	brk_ctl__sess_end(s, NULL);
}

static void ctl_call_finish(struct brk_ctl_call *call, bool ok)
{
	struct brk_ctl *ctl = call->ctl;

	if (call->type < CTL_TYPES)
		brk_req_stats_observe(&ctl->stats[call->type], ok, uv_hrtime() - call->start_ns);
	if (call->sess) {
		call->sess->inflight--;
		*call->pprev = call->next;
		if (call->next)
			call->next->pprev = call->pprev;
	}
	ipc_msg_free(call->req);
	free(call);
	ctl->ncalls--;
	brk_ctl__maybe_free(ctl);
}

static void ctl_send_error(struct ctl_sess *s, const struct ipc_msg *req, int err, const char *msg);

void brk_ctl_call_reply_too_large(struct brk_ctl_call *call, size_t size)
{
	struct ctl_sess *s = call->sess;
	char msg[200];

	snprintf(msg, sizeof(msg),
		 "the reply (%zu bytes) does not fit one control datagram (%u bytes); ask for "
		 "pages (ListDevices.max_devices) or each device's status",
		 size, ipc_limits_default.max_datagram);
	if (s) {
		brk_warn("control: pid %d uid %u: %s", (int)s->pid, (unsigned)s->uid, msg);
		ctl_send_error(s, call->req, -EMSGSIZE, msg);
	}
	ctl_call_finish(call, false);
}

/* Completes a call whose reply of `size` bytes was sent (r == 0, or its session is gone) or could
 * not be (r < 0). A reply larger than one datagram (an unpaged ListDevices of many devices with
 * long names, paths and faults: a client from before paging) is the protocol's limit, not the
 * peer's fault: it gets an error it can read, and keeps its session. */
static void ctl_reply_sent(struct brk_ctl_call *call, int r, size_t size)
{
	if (r == -EMSGSIZE) {
		brk_ctl_call_reply_too_large(call, size);
		return;
	}
	if (r < 0)
		ctl_send_failed(call->sess, r);
	ctl_call_finish(call, true);
}

void brk_ctl_call_reply(struct brk_ctl_call *call, const ProtobufCMessage *body)
{
	int r = 0;

	if (call->sess)
		r = ipc_chan_reply(ipc_uv_chan(call->sess->u), call->req, body, NULL, 0);
	ctl_reply_sent(call, r, r == -EMSGSIZE ? protobuf_c_message_get_packed_size(body) : 0);
}

void brk_ctl_call_reply_packed(struct brk_ctl_call *call, const ProtobufCMessageDescriptor *desc,
			       const void *body, size_t len)
{
	int r = 0;

	if (call->sess)
		r = ipc_chan_reply_packed(ipc_uv_chan(call->sess->u), call->req, desc, body, len);
	ctl_reply_sent(call, r, len);
}

size_t brk_ctl_reply_room(void)
{
	return ipc_limits_default.max_datagram - IPC_HDR_SIZE;
}

static void ctl_send_error(struct ctl_sess *s, const struct ipc_msg *req, int err, const char *msg)
{
	int r = ipc_chan_reply_error(ipc_uv_chan(s->u), req, err, "%s", msg);

	if (r < 0)
		ctl_send_failed(s, r);
}

void brk_ctl_call_error(struct brk_ctl_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
		va_end(ap);
	}
	if (!call->msg[0])
		snprintf(call->msg, sizeof(call->msg), "%s", strerror(-err));
	if (call->sess)
		ctl_send_error(call->sess, call->req, err, call->msg);
	ctl_call_finish(call, false);
}

void brk_ctl_call_set_message(struct brk_ctl_call *call, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
	va_end(ap);
}

uid_t brk_ctl_call_uid(const struct brk_ctl_call *call)
{
	return call->sess ? call->sess->uid : (uid_t)-1;
}

/* ---- request handlers: shape checks, then the daemon ----------------------------------------- */

static int ctl_check_bdf(struct brk_ctl_call *call, const char *bdf)
{
	if (vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) < 0) {
		brk_ctl_call_set_message(call,
					 "bdf: '%.32s' is not a canonical PCI address "
					 "(dddd:bb:dd.f, lower-case hex)",
					 bdf ? bdf : "");
		return -EINVAL;
	}
	return 0;
}

static int ctl_add_device(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__AddDevice *req = (const Vb__Ctl__AddDevice *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	if (!req->vm || !brk_registry_valid_vm_name(req->vm)) {
		brk_ctl_call_set_message(call,
					 "vm: a VM name is 1..%d of [A-Za-z0-9._-], not "
					 "starting with '.' or '-'",
					 BRK_VM_NAME_MAX);
		return -EINVAL;
	}
	/* -1 is "no change" to chown and setresuid: it names nobody. */
	if (req->owner_uid == UINT32_MAX || req->owner_gid == UINT32_MAX) {
		brk_ctl_call_set_message(call, "owner_uid/owner_gid: 4294967295 is not an id");
		return -EINVAL;
	}
	return s->ctl->cfg.ops->add_device(s->ctl->cfg.ctx, req, call);
}

static int ctl_remove_device(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__RemoveDevice *req = (const Vb__Ctl__RemoveDevice *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	if (req->timeout_ms > 600000) {
		brk_ctl_call_set_message(call, "timeout_ms: %u is above 600000 (10 minutes)",
					 req->timeout_ms);
		return -EINVAL;
	}
	return s->ctl->cfg.ops->remove_device(s->ctl->cfg.ctx, req, call);
}

static int ctl_list_devices(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__ListDevices *req = (const Vb__Ctl__ListDevices *)call->req->body;

	/* The cursor is compared with BDFs as a string: only a canonical one orders like them. */
	if (req->after && req->after[0] && vb_bdf_parse(req->after, VB_BDF_STRICT, NULL) < 0) {
		brk_ctl_call_set_message(call,
					 "after: '%.32s' is not a canonical PCI address "
					 "(dddd:bb:dd.f, lower-case hex) nor empty",
					 req->after);
		return -EINVAL;
	}
	return s->ctl->cfg.ops->list_devices(s->ctl->cfg.ctx, req, call);
}

static int ctl_device_status(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__DeviceStatusRequest *req =
	    (const Vb__Ctl__DeviceStatusRequest *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	return s->ctl->cfg.ops->device_status(s->ctl->cfg.ctx, req->bdf, call);
}

static int ctl_subscribe(struct ctl_sess *s, struct brk_ctl_call *call)
{
	Vb__Empty empty = VB__EMPTY__INIT;

	s->state = CTL_SUBSCRIBED;
	brk_ctl_call_reply(call, &empty.base);
	return 0;
}

static void ctl_metrics_own(const struct brk_ctl *ctl, FILE *f);

static int ctl_metrics(struct ctl_sess *s, struct brk_ctl_call *call)
{
	Vb__Ctl__MetricsReply rep = VB__CTL__METRICS_REPLY__INIT;
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int r;

	if (!f)
		return -ENOMEM;
	r = s->ctl->cfg.ops->metrics(s->ctl->cfg.ctx, f);
	ctl_metrics_own(s->ctl, f);
	if (fclose(f) != 0)
		r = -ENOMEM;
	if (r < 0)
		return r;
	rep.text = text;
	brk_ctl_call_reply(call, &rep.base);
	return 0;
}

#define ADMITTED (CTL_ADMIN | CTL_SUBSCRIBED)

/* What a session may ask, and when. Anything not here (EVENT is broker -> peer only) ends the
 * session. A subscribed session may still make requests; it may not subscribe twice. */
static const struct ctl_handler ctl_table[] = {
    {{VB__CTL__TYPE__ADD_DEVICE, ADMITTED, "add_device"}, ctl_add_device},
    {{VB__CTL__TYPE__REMOVE_DEVICE, ADMITTED, "remove_device"}, ctl_remove_device},
    {{VB__CTL__TYPE__LIST_DEVICES, ADMITTED, "list_devices"}, ctl_list_devices},
    {{VB__CTL__TYPE__DEVICE_STATUS, ADMITTED, "device_status"}, ctl_device_status},
    {{VB__CTL__TYPE__SUBSCRIBE_EVENTS, CTL_ADMIN, "subscribe_events"}, ctl_subscribe},
    {{VB__CTL__TYPE__METRICS, ADMITTED, "metrics"}, ctl_metrics},
};

/* ---- dispatch ---------------------------------------------------------------------------- */

static void ctl_refuse(struct ctl_sess *s, struct ipc_msg *m)
{
	const struct brk_ctl_cfg *cfg = &s->ctl->cfg;
	char msg[200];

	if (cfg->admin_gid_set)
		snprintf(msg, sizeof(msg),
			 "permission denied: uid %u gid %u is not the broker's admin (uid %u, or "
			 "gid %u as primary or supplementary group)",
			 (unsigned)s->uid, (unsigned)s->gid, (unsigned)cfg->admin_uid,
			 (unsigned)cfg->admin_gid);
	else
		snprintf(msg, sizeof(msg),
			 "permission denied: uid %u is not the broker's admin (uid %u)",
			 (unsigned)s->uid, (unsigned)cfg->admin_uid);
	ctl_send_error(s, m, -EPERM, msg);
	ipc_msg_free(m);
	brk_ctl__sess_end(s, NULL);
}

/* A request that is unknown or not allowed now: answered with why, then the session ends. */
static void ctl_violation(struct ctl_sess *s, struct ipc_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ctl_violation(struct ctl_sess *s, struct ipc_msg *m, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->ctl->protocol_errors++;
	if (m->kind == IPC_KIND_REQUEST)
		ctl_send_error(s, m, -EPROTO, msg);
	ipc_msg_free(m);
	brk_ctl__sess_end(s, msg);
}

void brk_ctl__dispatch(struct ctl_sess *s, struct ipc_msg *m)
{
	const struct ctl_handler *h;
	enum vb_req_check check;
	struct brk_ctl_call *call;
	int r;

	if (s->state == CTL_REFUSED)
		return ctl_refuse(s, m);
	if (m->kind != IPC_KIND_REQUEST)
		return ctl_violation(s, m, "message kind %d: only requests are accepted", m->kind);
	h = VB_REQ_LOOKUP(ctl_table, m->type, s->state, &check);
	if (check == VB_REQ_UNKNOWN)
		return ctl_violation(s, m, "unknown request type %u", m->type);
	if (check == VB_REQ_NOT_NOW)
		return ctl_violation(s, m, "%s not allowed now%s", h->req.name,
				     s->state == CTL_SUBSCRIBED ? " (already subscribed)" : "");
	if (s->inflight >= BRK_CTL_MAX_INFLIGHT) {
		ctl_send_error(s, m, -EBUSY, "too many requests in flight on this connection");
		ipc_msg_free(m);
		return;
	}
	call = calloc(1, sizeof(*call));
	if (!call) {
		ctl_send_error(s, m, -ENOMEM, "out of memory");
		ipc_msg_free(m);
		return;
	}
	call->ctl = s->ctl;
	call->sess = s;
	call->req = m;
	call->type = m->type;
	call->start_ns = uv_hrtime();
	call->next = s->calls;
	if (s->calls)
		s->calls->pprev = &call->next;
	call->pprev = &s->calls;
	s->calls = call;
	s->inflight++;
	s->ctl->ncalls++;
	r = h->fn(s, call);
	if (r < 0)
		brk_ctl_call_error(call, r, NULL);
}

static void ctl_metrics_own(const struct brk_ctl *ctl, FILE *f)
{
	brk_req_stats_print(f, "control", "Control", ctl_table, ARRAY_SIZE(ctl_table),
			    sizeof(ctl_table[0]), ctl->stats);
	brk_metric_value(f, "vfio_broker_control_sessions", "gauge", "Control connections open.",
			 ctl->nsessions);
	brk_metric_value(f, "vfio_broker_control_refused_total", "counter",
			 "Control connections refused: not the admin uid/gid.", ctl->refused);
	brk_metric_value(f, "vfio_broker_control_refused_dropped_total", "counter",
			 "Refused connections closed unanswered to make room for newer ones.",
			 ctl->refused_dropped);
	brk_metric_value(f, "vfio_broker_control_rejected_full_total", "counter",
			 "Admin connections closed: every admin session slot was taken.",
			 ctl->rejected_full);
	brk_metric_value(f, "vfio_broker_control_send_overflows_total", "counter",
			 "Control peers disconnected for not reading what they were sent.",
			 ctl->send_overflows);
	brk_metric_value(f, "vfio_broker_control_protocol_errors_total", "counter",
			 "Control sessions ended for unknown, malformed or out-of-order requests.",
			 ctl->protocol_errors);
	brk_metric_value(f, "vfio_broker_events_sent_total", "counter",
			 "Events sent to subscribers.", ctl->events_sent);
}
