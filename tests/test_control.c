/*
 * test_control: the control socket server's requests, with a fake daemon behind brk_ctl_ops
 * (control_env.c): the dispatch table's order rules, sessions ended on unknown requests or
 * events from the peer, shape checks before the daemon, deferred replies, errors with messages,
 * replies too large for a datagram, events to subscribers, request metrics, and the re-exec's
 * drain and handover. Admission and peers that misbehave are test_control_peers.c's.
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
#include "control_env.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
