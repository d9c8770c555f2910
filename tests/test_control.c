/*
 * test_control: the control socket server with a fake daemon behind brk_ctl_ops. Admission by
 * SO_PEERCRED and SO_PEERGROUPS (with peers of other uids and groups, forked and set up with
 * setgroups/setresgid/setresuid, so the tests that need them run as root), the dispatch table's
 * order rules, sessions ended on unknown requests, deferred replies, errors with messages,
 * events to subscribers, request metrics, and peers that never read their replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.pb-c.h"
#include "control.h"
#include "fdstore.h"
#include "ipc.h"
#include "test_wait.h"

struct fake {
	int adds, removes, lists, statuses, metrics;
	int add_result;	 /* < 0: add_device fails with it */
	bool defer;	 /* add_device keeps the call for the test to complete */
	unsigned list_n; /* list_devices answers this many devices, each at its largest */
	struct brk_ctl_call *held;
	char last_bdf[32];
};

struct env {
	uv_loop_t loop;
	char dir[64], path[96];
	struct brk_ctl *ctl;
	struct fake fake;
	struct ipc_chan *client;
};

static int fake_add(void *ctx, const Vb__Ctl__AddDevice *req, struct brk_ctl_call *call)
{
	struct fake *f = ctx;
	Vb__Ctl__AddDeviceReply rep = VB__CTL__ADD_DEVICE_REPLY__INIT;

	f->adds++;
	snprintf(f->last_bdf, sizeof(f->last_bdf), "%s", req->bdf);
	if (f->add_result < 0) {
		brk_ctl_call_set_message(call, "fake says no to %s", req->bdf);
		return f->add_result;
	}
	if (f->defer) {
		f->held = call;
		return 0;
	}
	rep.socket_path = "/run/test.sock";
	rep.worker_pid = 77;
	brk_ctl_call_reply(call, &rep.base);
	return 0;
}

static int fake_remove(void *ctx, const Vb__Ctl__RemoveDevice *req, struct brk_ctl_call *call)
{
	struct fake *f = ctx;
	Vb__Ctl__RemoveDeviceReply rep = VB__CTL__REMOVE_DEVICE_REPLY__INIT;

	f->removes++;
	brk_ctl_call_reply(call, &rep.base);
	return 0;
}

static int fake_list(void *ctx, const Vb__Ctl__ListDevices *req, struct brk_ctl_call *call)
{
	struct fake *f = ctx;
	Vb__Ctl__ListDevicesReply rep = VB__CTL__LIST_DEVICES_REPLY__INIT;
	Vb__Ctl__DeviceStatus *st = calloc(f->list_n ? f->list_n : 1, sizeof(*st));
	Vb__Ctl__DeviceStatus **list = calloc(f->list_n ? f->list_n : 1, sizeof(*list));
	char name[65], path[108], fault[256];

	assert_non_null(st);
	assert_non_null(list);
	(void)req;
	memset(name, 'v', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	memset(fault, 'f', sizeof(fault) - 1);
	fault[sizeof(fault) - 1] = '\0';
	for (unsigned i = 0; i < f->list_n; i++) {
		vb__ctl__device_status__init(&st[i]);
		st[i].bdf = "0000:00:00.0";
		st[i].vm = name;
		st[i].socket_path = path;
		st[i].vfio_user_socket_path = path;
		st[i].last_fault = fault;
		list[i] = &st[i];
	}
	rep.devices = list;
	rep.n_devices = f->list_n;
	f->lists++;
	brk_ctl_call_reply(call, &rep.base);
	free(list);
	free(st);
	return 0;
}

static int fake_status(void *ctx, const char *bdf, struct brk_ctl_call *call)
{
	struct fake *f = ctx;

	f->statuses++;
	brk_ctl_call_set_message(call, "no device %s", bdf);
	return -ENOENT;
}

static int fake_metrics(void *ctx, FILE *out)
{
	struct fake *f = ctx;

	f->metrics++;
	fprintf(out, "fake_metric 1\n");
	return 0;
}

static const struct brk_ctl_ops fake_ops = {
    .add_device = fake_add,
    .remove_device = fake_remove,
    .list_devices = fake_list,
    .device_status = fake_status,
    .metrics = fake_metrics,
};

static void env_start(struct env *e, uid_t admin_uid, bool gid_set, gid_t admin_gid)
{
	struct brk_ctl_cfg cfg = {.admin_uid = admin_uid,
				  .admin_gid = admin_gid,
				  .admin_gid_set = gid_set,
				  .ops = &fake_ops,
				  .ctx = &e->fake};
	int lfd, cfd;

	memset(e, 0, sizeof(*e));
	assert_int_equal(uv_loop_init(&e->loop), 0);
	snprintf(e->dir, sizeof(e->dir), "/tmp/test_control.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/ctl.sock", e->dir);
	assert_int_equal(ipc_listen(e->path, 0600, 8, &lfd), 0);
	assert_int_equal(brk_ctl_new(&e->loop, lfd, &cfg, &e->ctl), 0);
	assert_int_equal(ipc_connect(e->path, &cfd), 0);
	assert_int_equal(ipc_chan_new(cfd, &ipc_proto_control, NULL, &e->client), 0);
}

static void env_stop(struct env *e)
{
	if (e->client)
		ipc_chan_free(e->client);
	brk_ctl_free(e->ctl);
	for (int i = 0; i < 100 && uv_run(&e->loop, UV_RUN_NOWAIT); i++)
		;
	assert_int_equal(uv_loop_close(&e->loop), 0);
	unlink(e->path);
	rmdir(e->dir);
}

/* One turn of the broker's loop, once it has something to do (one of its fds ready, a timer
 * due) or `fd` (when >= 0) is readable, waiting for that at most until `deadline`. */
static void turn(struct env *e, int fd, int64_t deadline)
{
	struct pollfd p[2] = {{.fd = uv_backend_fd(&e->loop), .events = POLLIN},
			      {.fd = fd, .events = POLLIN}};
	int ms = test_left_ms(deadline), t = uv_backend_timeout(&e->loop);

	if (t >= 0 && t < ms)
		ms = t;
	(void)poll(p, 2, ms);
	uv_run(&e->loop, UV_RUN_NOWAIT);
}

/* Runs the broker's loop until the client has something to read (or the peer closed). */
static int pump_recv(struct env *e, struct ipc_msg **ret)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;

	for (;;) {
		int r = ipc_chan_recv(e->client, ret);

		if (r != -EAGAIN)
			return r;
		if (test_now_ms() > deadline)
			return -ETIMEDOUT;
		turn(e, ipc_chan_fd(e->client), deadline);
	}
}

static void send_req(struct env *e, uint16_t type, const ProtobufCMessage *body)
{
	uint32_t id;

	assert_int_equal(ipc_chan_request(e->client, type, body, NULL, 0, &id), 0);
}

/* Expects an error reply with `code` whose message contains `text`. */
static void expect_error(struct env *e, int code, const char *text)
{
	struct ipc_msg *m = NULL;
	const Vb__Error *er;

	assert_int_equal(pump_recv(e, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	er = (const Vb__Error *)m->body;
	assert_int_equal(er->code, code);
	if (!strstr(er->message, text))
		fail_msg("error message '%s' lacks '%s'", er->message, text);
	ipc_msg_free(m);
}

static void expect_reply(struct env *e, struct ipc_msg **ret)
{
	struct ipc_msg *m = NULL;

	assert_int_equal(pump_recv(e, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	if (ret)
		*ret = m;
	else
		ipc_msg_free(m);
}

static void expect_closed(struct env *e)
{
	struct ipc_msg *m = NULL;
	int r = pump_recv(e, &m);

	if (r == 0)
		ipc_msg_free(m);
	assert_true(r == -EPIPE || r == -ECONNRESET);
}

static void close_pipe(int p[2])
{
	close(p[0]);
	close(p[1]);
}

static void list(struct env *e)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;

	send_req(e, VB__CTL__TYPE__LIST_DEVICES, &req.base);
}

static void test_control_non_admin_refused_with_eperm(void **state)
{
	struct env e;

	/* We are not uid 4242, and no admin gid is configured. */
	env_start(&e, 4242, false, 0);
	list(&e);
	expect_error(&e, EPERM, "is not the broker's admin (uid 4242)");
	expect_closed(&e);
	assert_int_equal(e.fake.lists, 0);
	assert_int_equal(brk_ctl_sessions(e.ctl), 0);
	env_stop(&e);
}

static void test_control_admin_gid_admitted(void **state)
{
	struct env e;

	env_start(&e, 4242, true, getgid());
	list(&e);
	expect_reply(&e, NULL);
	assert_int_equal(e.fake.lists, 1);
	env_stop(&e);
}

/* 128 devices with the longest names, paths and faults do not fit one datagram: the admin is
 * told so (not hung up on) and its session goes on. */
static void test_control_oversize_reply_refused_with_emsgsize_session_kept(void **state)
{
	struct env e;

	env_start(&e, getuid(), false, 0);
	e.fake.list_n = 128;
	list(&e);
	expect_error(&e, EMSGSIZE, "does not fit one control datagram");
	e.fake.list_n = 1;
	list(&e);
	expect_reply(&e, NULL);
	assert_int_equal(e.fake.lists, 2);
	env_stop(&e);
}

static void test_control_admin_uid_admitted(void **state)
{
	struct env e;

	env_start(&e, getuid(), true, 4242);
	list(&e);
	expect_reply(&e, NULL);
	list(&e);
	expect_reply(&e, NULL);
	assert_int_equal(e.fake.lists, 2);
	env_stop(&e);
}

/* A protocol with every control type plus one the broker does not know. */
static const struct ipc_msgdef rogue_defs[] = {
    {.type = VB__CTL__TYPE__LIST_DEVICES,
     .request = &vb__ctl__list_devices__descriptor,
     .reply = &vb__ctl__list_devices_reply__descriptor},
    {.type = 99, .request = &vb__empty__descriptor, .reply = &vb__empty__descriptor},
};
static const struct ipc_proto rogue_proto = {
    .name = "control",
    .id = IPC_PROTO_CONTROL,
    .version = VB__CTL__VERSION__VERSION_CURRENT,
    .defs = rogue_defs,
    .ndefs = 2,
};

static void test_control_unknown_type_ends_session(void **state)
{
	Vb__Empty empty = VB__EMPTY__INIT;
	struct ipc_msg *m = NULL;
	struct env e;
	int fd, r;

	env_start(&e, getuid(), false, 0);
	ipc_chan_free(e.client);
	assert_int_equal(ipc_connect(e.path, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &rogue_proto, NULL, &e.client), 0);
	send_req(&e, 99, &empty.base);
	/* The channel may answer the unknown type before the session goes; then the peer is
	 * gone. The known request sent after it is never served. */
	list(&e);
	r = pump_recv(&e, &m);
	if (r == 0) {
		assert_int_equal(m->kind, IPC_KIND_ERROR);
		assert_int_equal(((const Vb__Error *)m->body)->code, EPROTO);
		ipc_msg_free(m);
		expect_closed(&e);
	} else {
		assert_true(r == -EPIPE || r == -ECONNRESET);
	}
	assert_int_equal(e.fake.lists, 0);
	assert_int_equal(brk_ctl_sessions(e.ctl), 0);
	env_stop(&e);
}

static void test_control_event_from_peer_ends_session(void **state)
{
	Vb__Ctl__Event ev = VB__CTL__EVENT__INIT;
	struct env e;

	env_start(&e, getuid(), false, 0);
	ev.bdf = "0000:00:03.0";
	assert_int_equal(ipc_chan_event(e.client, VB__CTL__TYPE__EVENT, &ev.base, NULL, 0), 0);
	list(&e);
	expect_closed(&e);
	assert_int_equal(e.fake.lists, 0);
	env_stop(&e);
}

static void subscribe(struct env *e)
{
	Vb__Ctl__SubscribeEvents req = VB__CTL__SUBSCRIBE_EVENTS__INIT;

	send_req(e, VB__CTL__TYPE__SUBSCRIBE_EVENTS, &req.base);
}

static void test_control_subscribe_twice_ends_session(void **state)
{
	struct env e;

	env_start(&e, getuid(), false, 0);
	subscribe(&e);
	expect_reply(&e, NULL);
	subscribe(&e);
	expect_error(&e, EPROTO, "subscribe_events not allowed now (already subscribed)");
	expect_closed(&e);
	env_stop(&e);
}

static void test_control_subscriber_gets_events_and_may_request(void **state)
{
	struct ipc_msg *m = NULL;
	const Vb__Ctl__Event *ev;
	struct env e;

	env_start(&e, getuid(), false, 0);
	/* Not subscribed yet: nothing arrives. */
	brk_ctl_event(e.ctl, VB__CTL__EVENT_KIND__EVENT_DEVICE_ADDED, "0000:00:02.0", "vm0", "x");
	subscribe(&e);
	expect_reply(&e, NULL);
	brk_ctl_event(e.ctl, VB__CTL__EVENT_KIND__EVENT_WORKER_CRASHED, "0000:00:03.0", "vm1",
		      "worker %d killed by signal %d", 12, 9);
	assert_int_equal(pump_recv(&e, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	ev = (const Vb__Ctl__Event *)m->body;
	assert_int_equal(ev->kind, VB__CTL__EVENT_KIND__EVENT_WORKER_CRASHED);
	assert_string_equal(ev->bdf, "0000:00:03.0");
	assert_string_equal(ev->vm, "vm1");
	assert_string_equal(ev->detail, "worker 12 killed by signal 9");
	assert_true(ev->timestamp_ns > 0);
	ipc_msg_free(m);
	list(&e);
	expect_reply(&e, NULL);
	env_stop(&e);
}

static void drained(void *data, unsigned dropped)
{
	*(int *)data = 1 + (int)dropped;
}

/* A re-exec's drain: reading stops at once (a request sent meanwhile is not read), the call in
 * flight is answered and its answer sent, then done() comes, with nothing dropped; the
 * connection handed over (a subscriber's: "ctl.sub.0") and adopted by another server (the new
 * image) serves the request that waited and keeps the subscription. */
static void test_control_drain_answers_in_flight_handover_keeps_session(void **state)
{
	Vb__Ctl__AddDevice add = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__AddDeviceReply rep = VB__CTL__ADD_DEVICE_REPLY__INIT;
	struct brk_ctl_cfg cfg = {.admin_uid = getuid(), .ops = &fake_ops};
	struct brk_fdstore *store;
	struct brk_ctl *next;
	struct ipc_msg *m = NULL;
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int done = 0, lfd, fd;
	char path[128];
	struct env e;

	env_start(&e, getuid(), false, 0);
	cfg.ctx = &e.fake;
	subscribe(&e);
	expect_reply(&e, NULL);
	e.fake.defer = true;
	add.bdf = "0000:00:03.0";
	add.vm = "vm1";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	while (!e.fake.held && test_now_ms() < deadline)
		turn(&e, -1, deadline);
	assert_non_null(e.fake.held);
	assert_int_equal(brk_ctl_drain(e.ctl, TEST_HANG_MS, drained, &done), 0);
	assert_int_equal(brk_ctl_drain(e.ctl, TEST_HANG_MS, drained, &done), -EBUSY);
	list(&e);
	/* The add is held: however long the loop turns, the drain is not done, the list unread. */
	for (int i = 0; i < 5; i++)
		turn(&e, -1, test_now_ms() + 20);
	assert_int_equal(done, 0);
	assert_int_equal(e.fake.lists, 0);
	rep.socket_path = "/run/x.sock";
	brk_ctl_call_reply(e.fake.held, &rep.base);
	while (!done && test_now_ms() < deadline)
		turn(&e, -1, deadline);
	assert_int_equal(done, 1); /* nothing dropped */
	assert_int_equal(ipc_chan_recv(e.client, &m), 0);
	assert_int_equal(m->type, VB__CTL__TYPE__ADD_DEVICE);
	ipc_msg_free(m);
	assert_int_equal(brk_fdstore_new(false, 0, &store), 0);
	assert_int_equal(brk_ctl_handover(e.ctl, store), 1);
	fd = fcntl(brk_fdstore_get(store, "ctl.sub.0"), F_DUPFD_CLOEXEC, 3);
	assert_true(fd >= 0);
	brk_fdstore_free(store);
	/* The new image's server, on the same loop: the old one goes, the connection stays. */
	snprintf(path, sizeof(path), "%s/next.sock", e.dir);
	assert_int_equal(ipc_listen(path, 0600, 8, &lfd), 0);
	assert_int_equal(brk_ctl_new(&e.loop, lfd, &cfg, &next), 0);
	assert_int_equal(brk_ctl_adopt(next, "ctl.other.0", -1), -EINVAL);
	assert_int_equal(brk_ctl_adopt(next, "ctl.sub.0", fd), 0);
	brk_ctl_free(e.ctl);
	e.ctl = next;
	expect_reply(&e, &m);
	assert_int_equal(m->type, VB__CTL__TYPE__LIST_DEVICES);
	ipc_msg_free(m);
	assert_int_equal(e.fake.lists, 1);
	brk_ctl_event(next, VB__CTL__EVENT_KIND__EVENT_DEVICE_ADDED, "0000:00:03.0", "vm1", "x");
	assert_int_equal(pump_recv(&e, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	ipc_msg_free(m);
	env_stop(&e);
	unlink(path);
}

static void test_control_bad_bdf_refused_before_daemon(void **state)
{
	Vb__Ctl__AddDevice add = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__DeviceStatusRequest st = VB__CTL__DEVICE_STATUS_REQUEST__INIT;
	Vb__Ctl__ListDevices ls = VB__CTL__LIST_DEVICES__INIT;
	struct env e;

	env_start(&e, getuid(), false, 0);
	add.bdf = "0000:00:03.0/../../x";
	add.vm = "vm1";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	expect_error(&e, EINVAL, "is not a canonical PCI address");
	add.bdf = "0000:00:0A.0"; /* upper case: not canonical */
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	expect_error(&e, EINVAL, "is not a canonical PCI address");
	add.bdf = "0000:00:03.0";
	add.vm = "../vm";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	expect_error(&e, EINVAL, "vm: a VM name");
	add.vm = "vm1";
	add.owner_uid = UINT32_MAX;
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	expect_error(&e, EINVAL, "is not an id");
	st.bdf = "";
	send_req(&e, VB__CTL__TYPE__DEVICE_STATUS, &st.base);
	expect_error(&e, EINVAL, "is not a canonical PCI address");
	/* ListDevices' cursor is compared with BDFs as a string: only canonical ones order. */
	ls.after = "0000:00:0A.0";
	ls.max_devices = 4;
	send_req(&e, VB__CTL__TYPE__LIST_DEVICES, &ls.base);
	expect_error(&e, EINVAL, "after: '0000:00:0A.0' is not a canonical PCI address");
	assert_int_equal(e.fake.adds, 0);
	assert_int_equal(e.fake.statuses, 0);
	assert_int_equal(e.fake.lists, 0);
	/* The session survives bad arguments. */
	list(&e);
	expect_reply(&e, NULL);
	env_stop(&e);
}

static void test_control_daemon_error_message_reaches_peer(void **state)
{
	Vb__Ctl__AddDevice add = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__DeviceStatusRequest st = VB__CTL__DEVICE_STATUS_REQUEST__INIT;
	struct env e;

	env_start(&e, getuid(), false, 0);
	e.fake.add_result = -EEXIST;
	add.bdf = "0000:00:03.0";
	add.vm = "vm1";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	expect_error(&e, EEXIST, "fake says no to 0000:00:03.0");
	st.bdf = "0000:00:04.0";
	send_req(&e, VB__CTL__TYPE__DEVICE_STATUS, &st.base);
	expect_error(&e, ENOENT, "no device 0000:00:04.0");
	env_stop(&e);
}

static void test_control_deferred_reply_arrives_later(void **state)
{
	Vb__Ctl__AddDevice add = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__AddDeviceReply rep = VB__CTL__ADD_DEVICE_REPLY__INIT;
	struct ipc_msg *m = NULL;
	struct env e;

	env_start(&e, getuid(), false, 0);
	e.fake.defer = true;
	add.bdf = "0000:00:03.0";
	add.vm = "vm1";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	/* Other requests are served while the add is pending. */
	list(&e);
	expect_reply(&e, NULL);
	assert_non_null(e.fake.held);
	rep.socket_path = "/run/x.sock";
	rep.worker_pid = 1234;
	brk_ctl_call_reply(e.fake.held, &rep.base);
	expect_reply(&e, &m);
	assert_int_equal(m->type, VB__CTL__TYPE__ADD_DEVICE);
	assert_string_equal(((const Vb__Ctl__AddDeviceReply *)m->body)->socket_path, "/run/x.sock");
	assert_int_equal(((const Vb__Ctl__AddDeviceReply *)m->body)->worker_pid, 1234);
	ipc_msg_free(m);
	env_stop(&e);
}

static void test_control_deferred_call_survives_peer_leaving(void **state)
{
	Vb__Ctl__AddDevice add = VB__CTL__ADD_DEVICE__INIT;
	struct env e;
	int64_t deadline;

	env_start(&e, getuid(), false, 0);
	e.fake.defer = true;
	add.bdf = "0000:00:03.0";
	add.vm = "vm1";
	send_req(&e, VB__CTL__TYPE__ADD_DEVICE, &add.base);
	deadline = test_now_ms() + TEST_HANG_MS;
	while (!e.fake.held && test_now_ms() < deadline)
		turn(&e, -1, deadline);
	assert_non_null(e.fake.held);
	ipc_chan_free(e.client);
	e.client = NULL;
	deadline = test_now_ms() + TEST_HANG_MS;
	while (brk_ctl_sessions(e.ctl) && test_now_ms() < deadline)
		turn(&e, -1, deadline);
	assert_int_equal(brk_ctl_sessions(e.ctl), 0);
	assert_int_equal(brk_ctl_call_uid(e.fake.held), (uid_t)-1);
	/* Completing it now is dropped quietly (ASan checks nothing dangles). */
	brk_ctl_call_error(e.fake.held, -EIO, "too late");
	env_stop(&e);
}

static void test_control_metrics_count_requests(void **state)
{
	Vb__Ctl__MetricsRequest req = VB__CTL__METRICS_REQUEST__INIT;
	Vb__Ctl__DeviceStatusRequest st = VB__CTL__DEVICE_STATUS_REQUEST__INIT;
	struct ipc_msg *m = NULL;
	const char *text;
	struct env e;

	env_start(&e, getuid(), false, 0);
	for (int i = 0; i < 3; i++) {
		list(&e);
		expect_reply(&e, NULL);
	}
	st.bdf = "0000:00:04.0";
	send_req(&e, VB__CTL__TYPE__DEVICE_STATUS, &st.base);
	expect_error(&e, ENOENT, "no device");
	send_req(&e, VB__CTL__TYPE__METRICS, &req.base);
	expect_reply(&e, &m);
	text = ((const Vb__Ctl__MetricsReply *)m->body)->text;
	assert_non_null(strstr(text, "fake_metric 1\n"));
	assert_non_null(strstr(
	    text, "vfio_broker_control_requests_total{type=\"list_devices\",result=\"ok\"} 3\n"));
	assert_non_null(strstr(
	    text,
	    "vfio_broker_control_requests_total{type=\"device_status\",result=\"error\"} 1\n"));
	assert_non_null(strstr(
	    text, "vfio_broker_control_request_duration_seconds_count{type=\"list_devices\"} 3\n"));
	assert_non_null(strstr(text, "vfio_broker_control_sessions 1\n"));
	ipc_msg_free(m);
	env_stop(&e);
}

/* ---- peers that do not read ---------------------------------------------------------------- */

/* How many datagrams of `len` bytes a fresh socket pair holds before a send would block: what a
 * peer that never reads can take before the broker's sends start queueing. */
static int socket_capacity(size_t len)
{
	uint8_t buf[64] = {0};
	int sv[2], n = 0;

	assert_true(len <= sizeof(buf));
	assert_int_equal(ipc_socketpair(sv), 0);
	while (send(sv[0], buf, len, MSG_DONTWAIT) == (ssize_t)len)
		n++;
	assert_int_equal(errno, EAGAIN);
	close(sv[0]);
	close(sv[1]);
	return n;
}

/* A client that may have thousands of requests in flight, whose own sends never queue (a send
 * the broker's socket cannot take yet is -ETIMEDOUT: the test then runs the loop and retries). */
static struct ipc_chan *greedy_client(struct env *e)
{
	struct ipc_limits l = ipc_limits_default;
	struct ipc_chan *c;
	int fd;

	l.max_outstanding = 4096;
	l.queue_msgs = 0;
	l.send_timeout_ms = 0;
	assert_int_equal(ipc_connect(e->path, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, &l, &c), 0);
	return c;
}

/* Sends `n` LIST_DEVICES on `c` and runs the loop until the daemon has answered them all, or
 * until the broker dropped `c` (false). */
static bool flood_lists(struct env *e, struct ipc_chan *c, int n)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;
	int target = e->fake.lists + n;

	for (int i = 0; i < n; i++) {
		int r;

		while ((r = ipc_chan_request(c, VB__CTL__TYPE__LIST_DEVICES, &req.base, NULL, 0,
					     NULL)) == -ETIMEDOUT)
			uv_run(&e->loop, UV_RUN_NOWAIT);
		if (r == -EPIPE || r == -ECONNRESET)
			return false;
		assert_int_equal(r, 0);
	}
	/* Everything sent is read and answered by the broker in the next rounds of its loop,
	 * unless it closed the connection. */
	for (int i = 0; i < 100000 && e->fake.lists < target; i++) {
		uv_run(&e->loop, UV_RUN_NOWAIT);
		if (brk_ctl_sessions(e->ctl) < 2)
			return false;
	}
	assert_int_equal(e->fake.lists, target);
	return true;
}

static void test_control_reader_stalled_others_served_then_dropped(void **state)
{
	/* An empty ListDevicesReply is a bare header. */
	int cap = socket_capacity(IPC_HDR_SIZE), k = cap + 50;
	struct ipc_msg *m = NULL;
	struct ipc_chan *stalled;
	uint32_t last = 0;
	struct env e;
	int r;

	env_start(&e, getuid(), false, 0);
	stalled = greedy_client(&e);
	/* More answers than its socket holds, less than its send queue's budget: the broker
	 * queues the rest and goes on serving. */
	assert_true(flood_lists(&e, stalled, k));
	assert_int_equal(brk_ctl_sessions(e.ctl), 2);
	list(&e);
	expect_reply(&e, NULL);
	/* Every answer arrives, in order, as the stalled peer reads (the loop flushes). */
	for (int i = 0; i < k; i++) {
		while ((r = ipc_chan_recv(stalled, &m)) == -EAGAIN)
			uv_run(&e.loop, UV_RUN_NOWAIT);
		assert_int_equal(r, 0);
		assert_int_equal(m->kind, IPC_KIND_REPLY);
		assert_true(m->id > last);
		last = m->id;
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_chan_recv(stalled, &m), -EAGAIN);
	/* Now past the budget: the stalled peer is disconnected, the other one still served. */
	assert_false(flood_lists(&e, stalled, cap + (int)ipc_limits_default.queue_msgs + 16));
	for (int i = 0; i < 1000 && brk_ctl_sessions(e.ctl) != 1; i++)
		uv_run(&e.loop, UV_RUN_NOWAIT);
	assert_int_equal(brk_ctl_sessions(e.ctl), 1);
	for (int i = 0; (r = ipc_chan_recv(stalled, &m)) == 0; i++) {
		assert_true(i < cap + 1);
		ipc_msg_free(m);
	}
	assert_true(r == -EPIPE || r == -ECONNRESET);
	ipc_chan_free(stalled);
	list(&e);
	expect_reply(&e, NULL);
	env_stop(&e);
}

/* ---- peers of other users ---------------------------------------------------------------- */

#define OTHER_UID 61234
#define OTHER_GID 61235
#define ADMIN_GID 61236

/* The tests below connect as another user: the socket and its directory must let them. */
static bool need_root(struct env *e)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root to run peers as uid %d (setresuid)\n",
			      OTHER_UID);
		return false;
	}
	assert_int_equal(chmod(e->dir, 0755), 0);
	assert_int_equal(chmod(e->path, 0666), 0);
	return true;
}

/* Forks a peer with these credentials running `fn`; its exit status is fn's result. */
static pid_t spawn_as(gid_t gid, const gid_t *groups, size_t ngroups, int (*fn)(void *arg),
		      void *arg)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
			_exit(100);
		_exit(fn(arg));
	}
	return pid;
}

/* Runs the broker's loop until the peer exits; returns its exit status. */
static int pump_until_exit(struct env *e, pid_t pid)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), st;

	/* The pidfd turns readable when the peer exits. */
	assert_true(pidfd >= 0);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		assert_true(w >= 0);
		if (w == pid)
			break;
		if (test_now_ms() > deadline)
			fail_msg("peer %d still running after %d ms", (int)pid, TEST_HANG_MS);
		turn(e, pidfd, deadline);
	}
	close(pidfd);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* In the peer: one LIST_DEVICES; 0 when answered, 1 when refused with EPERM, 2 otherwise. */
static int peer_list(void *arg)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;
	const char *path = arg;
	struct ipc_chan *c;
	struct ipc_msg *m;
	int fd, r;

	if (ipc_connect(path, &fd) < 0 || ipc_chan_new(fd, &ipc_proto_control, NULL, &c) < 0)
		return 3;
	r = ipc_chan_call(c, VB__CTL__TYPE__LIST_DEVICES, &req.base, NULL, 0, -1, &m, NULL);
	if (r == 0)
		ipc_msg_free(m);
	ipc_chan_free(c);
	return r == 0 ? 0 : r == -EPERM ? 1 : 2;
}

static void test_control_admin_gid_supplementary_admitted(void **state)
{
	const gid_t admin[] = {ADMIN_GID}, other[] = {OTHER_GID + 10};
	struct env e;

	/* As after `usermod -aG`: the admin group is only a supplementary one of the peer. */
	env_start(&e, 0, true, ADMIN_GID);
	if (!need_root(&e)) {
		env_stop(&e);
		skip();
	}
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, admin, 1, peer_list, e.path)), 0);
	assert_int_equal(e.fake.lists, 1);
	/* Without it, the same user is refused. */
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, other, 1, peer_list, e.path)), 1);
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, NULL, 0, peer_list, e.path)), 1);
	assert_int_equal(e.fake.lists, 1);
	env_stop(&e);
}

struct lingerers {
	const char *path;
	int n;
	int ready[2], done[2];
};

/* In the peer: `n` refused connections that never send anything, held until told to go. */
static int peer_linger(void *arg)
{
	struct lingerers *l = arg;
	char c = 0;

	/* Only the test's end of each pipe: if the test dies, the read below sees EOF. */
	close(l->ready[0]);
	close(l->done[1]);
	for (int i = 0; i < l->n; i++) {
		int fd;

		if (ipc_connect(l->path, &fd) < 0)
			return 3;
	}
	if (write(l->ready[1], &c, 1) != 1 || read(l->done[0], &c, 1) != 1)
		return 4;
	return 0;
}

static void test_control_refused_lingerers_leave_admin_room(void **state)
{
	struct lingerers l = {.n = BRK_CTL_MAX_SESSIONS + 16};
	struct pollfd p;
	struct env e;
	pid_t pid;
	char c = 0;
	int64_t deadline;

	env_start(&e, 0, false, 0);
	if (!need_root(&e)) {
		env_stop(&e);
		skip();
	}
	l.path = e.path;
	assert_int_equal(pipe2(l.ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(l.done, O_CLOEXEC), 0);
	pid = spawn_as(OTHER_GID, NULL, 0, peer_linger, &l);
	p = (struct pollfd){.fd = l.ready[0], .events = POLLIN};
	deadline = test_now_ms() + TEST_HANG_MS;
	while (poll(&p, 1, 0) == 0 && test_now_ms() < deadline)
		turn(&e, l.ready[0], deadline);
	assert_int_equal(poll(&p, 1, 0), 1);
	/* 80 refused peers hold their connections; the admin, connecting after them all, gets
	 * in, and the one it had before still works. The broker holds only a few of them. */
	{
		struct ipc_chan *first = e.client;
		int fd;

		assert_int_equal(ipc_connect(e.path, &fd), 0);
		assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, NULL, &e.client), 0);
		list(&e);
		expect_reply(&e, NULL);
		ipc_chan_free(e.client);
		e.client = first;
	}
	list(&e);
	expect_reply(&e, NULL);
	assert_true(brk_ctl_sessions(e.ctl) <= 2 + BRK_CTL_MAX_REFUSED);
	assert_int_equal(write(l.done[1], &c, 1), 1);
	assert_int_equal(pump_until_exit(&e, pid), 0);
	close_pipe(l.ready);
	close_pipe(l.done);
	env_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_control_non_admin_refused_with_eperm),
	    cmocka_unit_test(test_control_admin_gid_admitted),
	    cmocka_unit_test(test_control_admin_uid_admitted),
	    cmocka_unit_test(test_control_oversize_reply_refused_with_emsgsize_session_kept),
	    cmocka_unit_test(test_control_unknown_type_ends_session),
	    cmocka_unit_test(test_control_event_from_peer_ends_session),
	    cmocka_unit_test(test_control_subscribe_twice_ends_session),
	    cmocka_unit_test(test_control_subscriber_gets_events_and_may_request),
	    cmocka_unit_test(test_control_drain_answers_in_flight_handover_keeps_session),
	    cmocka_unit_test(test_control_bad_bdf_refused_before_daemon),
	    cmocka_unit_test(test_control_daemon_error_message_reaches_peer),
	    cmocka_unit_test(test_control_deferred_reply_arrives_later),
	    cmocka_unit_test(test_control_deferred_call_survives_peer_leaving),
	    cmocka_unit_test(test_control_metrics_count_requests),
	    cmocka_unit_test(test_control_reader_stalled_others_served_then_dropped),
	    cmocka_unit_test(test_control_admin_gid_supplementary_admitted),
	    cmocka_unit_test(test_control_refused_lingerers_leave_admin_room),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
