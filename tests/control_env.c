/*
 * control_env: the control server under test and its fake daemon (control_env.h).
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

const struct brk_ctl_ops fake_ops = {
    .add_device = fake_add,
    .remove_device = fake_remove,
    .list_devices = fake_list,
    .device_status = fake_status,
    .metrics = fake_metrics,
};

void env_start(struct env *e, uid_t admin_uid, bool gid_set, gid_t admin_gid)
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

void env_stop(struct env *e)
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
void turn(struct env *e, int fd, int64_t deadline)
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
int pump_recv(struct env *e, struct ipc_msg **ret)
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

void send_req(struct env *e, uint16_t type, const ProtobufCMessage *body)
{
	uint32_t id;

	assert_int_equal(ipc_chan_request(e->client, type, body, NULL, 0, &id), 0);
}

/* Expects an error reply with `code` whose message contains `text`. */
void expect_error(struct env *e, int code, const char *text)
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

void expect_reply(struct env *e, struct ipc_msg **ret)
{
	struct ipc_msg *m = NULL;

	assert_int_equal(pump_recv(e, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	if (ret)
		*ret = m;
	else
		ipc_msg_free(m);
}

void expect_closed(struct env *e)
{
	struct ipc_msg *m = NULL;
	int r = pump_recv(e, &m);

	if (r == 0)
		ipc_msg_free(m);
	assert_true(r == -EPIPE || r == -ECONNRESET);
}

void close_pipe(int p[2])
{
	close(p[0]);
	close(p[1]);
}

void list(struct env *e)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;

	send_req(e, VB__CTL__TYPE__LIST_DEVICES, &req.base);
}
