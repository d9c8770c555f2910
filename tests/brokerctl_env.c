/*
 * brokerctl_env: the fake broker, the CLI runner and the JSON reader (brokerctl_env.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "base.h"
#include "common.pb-c.h"
#include "control.pb-c.h"
#include "ipc.h"
#include "vfiobroker/client.h"
#include "test_wait.h"
#include "brokerctl_env.h"

#define DEFAULT_METRICS                                                      \
	"# HELP vb_devices Assigned devices.\n"                              \
	"# TYPE vb_devices gauge\n"                                          \
	"vb_devices 2\n"                                                     \
	"vb_dma_pinned_bytes{vm=\"web1\",note=\"a \\\"q\\\"\"} 3221225472\n" \
	"garbage line without a value\n"

static void reply_status(struct ipc_chan *c, struct ipc_msg *m, const char *bdf)
{
	Vb__Ctl__DeviceStatus s = VB__CTL__DEVICE_STATUS__INIT;
	Vb__Ctl__IrqState irq = VB__CTL__IRQ_STATE__INIT, *irqs[1] = {&irq};

	s.bdf = (char *)bdf;
	s.vm = "web1";
	s.state = VB__CTL__DEVICE_STATE__STATE_CONNECTED;
	s.worker_pid = 4321;
	s.dma_mappings = 3;
	s.pinned_bytes = 3ull << 30;
	s.iommu_group = 7;
	s.socket_path = WORKER_SOCK;
	s.restarts = 1;
	s.resets = 2;
	irq.index = 2;
	irq.enabled = 5;
	s.n_irqs = 1;
	s.irqs = irqs;
	ipc_chan_reply(c, m, &s.base, NULL, 0);
}

static void reply_list(struct ipc_chan *c, struct ipc_msg *m)
{
	Vb__Ctl__ListDevicesReply rep = VB__CTL__LIST_DEVICES_REPLY__INIT;
	Vb__Ctl__DeviceStatus a = VB__CTL__DEVICE_STATUS__INIT, b = VB__CTL__DEVICE_STATUS__INIT;
	Vb__Ctl__DeviceStatus *devs[2] = {&a, &b};

	a.bdf = KNOWN_BDF;
	a.vm = "web1";
	a.state = VB__CTL__DEVICE_STATE__STATE_READY;
	a.worker_pid = 11;
	a.socket_path = "/s/a";
	b.bdf = "0000:3b:00.1";
	b.vm = NASTY_VM;
	b.state = VB__CTL__DEVICE_STATE__STATE_FAULTED;
	b.worker_pid = 123456;
	b.pinned_bytes = 1536;
	b.socket_path = "/run/a-much-longer-socket-path.sock";
	b.last_fault = "worker killed by signal 9";
	rep.n_devices = 2;
	rep.devices = devs;
	ipc_chan_reply(c, m, &rep.base, NULL, 0);
}

/* A paging broker: the devices after `after`, at most `max` (0: all) and at most what its
 * datagram holds (paged_fit), `next` when more follow. */
static void reply_list_page(struct fake *f, struct ipc_chan *c, struct ipc_msg *m)
{
	const Vb__Ctl__ListDevices *rq = (const void *)m->body;
	Vb__Ctl__ListDevicesReply rep = VB__CTL__LIST_DEVICES_REPLY__INIT;
	Vb__Ctl__DeviceStatus st[256], *devs[256];
	char bdf[256][24];
	unsigned first = 0, n = 0;

	assert_true(f->paged_n <= 256);
	f->list_pages++;
	f->list_max = rq->max_devices;
	while (first < f->paged_n && rq->after[0]) {
		snprintf(bdf[first], sizeof(bdf[first]), "0000:%02x:00.0", first);
		if (strcmp(bdf[first], rq->after) > 0)
			break;
		first++;
	}
	for (unsigned i = first; i < f->paged_n && (!rq->max_devices || n < rq->max_devices) &&
				 (!rq->max_devices || !f->paged_fit || n < f->paged_fit);
	     i++, n++) {
		vb__ctl__device_status__init(&st[n]);
		snprintf(bdf[i], sizeof(bdf[i]), "0000:%02x:00.0", i);
		st[n].bdf = bdf[i];
		st[n].vm = "web1";
		st[n].state = VB__CTL__DEVICE_STATE__STATE_READY;
		st[n].socket_path = "/s/a";
		devs[n] = &st[n];
	}
	rep.n_devices = n;
	rep.devices = devs;
	if (f->paged_stuck && n)
		rep.next = bdf[0];
	else if (first + n < f->paged_n)
		rep.next = bdf[first + n - 1];
	ipc_chan_reply(c, m, &rep.base, NULL, 0);
}

static void send_events(struct ipc_chan *c)
{
	Vb__Ctl__Event ev = VB__CTL__EVENT__INIT;

	ev.kind = VB__CTL__EVENT_KIND__EVENT_DEVICE_ADDED;
	ev.bdf = KNOWN_BDF;
	ev.vm = "web1";
	ev.timestamp_ns = 1700000000123456789ull;
	ipc_chan_event(c, VB__CTL__TYPE__EVENT, &ev.base, NULL, 0);
	ev.kind = VB__CTL__EVENT_KIND__EVENT_WORKER_CRASHED;
	ev.detail = "signal \"9\"";
	ipc_chan_event(c, VB__CTL__TYPE__EVENT, &ev.base, NULL, 0);
}

static void fake_handle(struct fake *f, struct ipc_chan *c, struct ipc_msg *m)
{
	f->requests++;
	if (f->silent)
		return;
	switch (m->type) {
	case VB__CTL__TYPE__ADD_DEVICE: {
		const Vb__Ctl__AddDevice *rq = (const void *)m->body;
		Vb__Ctl__AddDeviceReply rep = VB__CTL__ADD_DEVICE_REPLY__INIT;

		snprintf(f->add_bdf, sizeof(f->add_bdf), "%s", rq->bdf);
		snprintf(f->add_vm, sizeof(f->add_vm), "%s", rq->vm);
		f->add_uid = rq->owner_uid;
		f->add_gid = rq->owner_gid;
		f->add_bind = rq->bind_vfio;
		f->add_mmap = rq->allow_mmap;
		f->add_maps = rq->limits ? rq->limits->max_dma_mappings : 0;
		f->add_pinned = rq->limits ? rq->limits->max_pinned_bytes : 0;
		if (strcmp(rq->bdf, TAKEN_BDF) == 0) {
			ipc_chan_reply_error(c, m, -EEXIST,
					     "device %s is already assigned to vm db", rq->bdf);
			break;
		}
		rep.socket_path = WORKER_SOCK;
		rep.worker_pid = 4321;
		rep.iommu_group = 7;
		rep.iommu_backend = "vfio-type1v2";
		ipc_chan_reply(c, m, &rep.base, NULL, 0);
		break;
	}
	case VB__CTL__TYPE__REMOVE_DEVICE: {
		const Vb__Ctl__RemoveDevice *rq = (const void *)m->body;
		Vb__Ctl__RemoveDeviceReply rep = VB__CTL__REMOVE_DEVICE_REPLY__INIT;

		snprintf(f->rm_bdf, sizeof(f->rm_bdf), "%s", rq->bdf);
		f->rm_timeout = rq->timeout_ms;
		f->rm_force = rq->force;
		rep.vmm_acknowledged = !rq->force;
		ipc_chan_reply(c, m, &rep.base, NULL, 0);
		break;
	}
	case VB__CTL__TYPE__LIST_DEVICES:
		if (f->paged_n)
			reply_list_page(f, c, m);
		else
			reply_list(c, m);
		break;
	case VB__CTL__TYPE__DEVICE_STATUS: {
		const Vb__Ctl__DeviceStatusRequest *rq = (const void *)m->body;

		if (strcmp(rq->bdf, KNOWN_BDF) != 0)
			ipc_chan_reply_error(c, m, -ENOENT, "no device %s is assigned", rq->bdf);
		else
			reply_status(c, m, rq->bdf);
		break;
	}
	case VB__CTL__TYPE__SUBSCRIBE_EVENTS: {
		Vb__Empty e = VB__EMPTY__INIT;

		ipc_chan_reply(c, m, &e.base, NULL, 0);
		send_events(c);
		break;
	}
	case VB__CTL__TYPE__METRICS: {
		Vb__Ctl__MetricsReply rep = VB__CTL__METRICS_REPLY__INIT;

		rep.text = (char *)(f->metrics_text ? f->metrics_text : DEFAULT_METRICS);
		ipc_chan_reply(c, m, &rep.base, NULL, 0);
		break;
	}
	}
}

static void serve(struct fake *f, int fd)
{
	struct ipc_chan *c;
	struct ipc_msg *m;
	int r;

	if (ipc_chan_new(fd, &ipc_proto_control, NULL, &c) < 0) {
		close(fd);
		return;
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = ipc_chan_fd(c), .events = POLLIN},
				      {.fd = f->stop_fd, .events = POLLIN}};

		r = ipc_chan_recv(c, &m);
		if (r == -EAGAIN) {
			if (poll(p, 2, TEST_HANG_MS) <= 0 || p[1].revents)
				break;
			continue;
		}
		if (r < 0)
			break;
		fake_handle(f, c, m);
		ipc_msg_free(m);
	}
	ipc_chan_free(c);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = f->listen_fd, .events = POLLIN},
				      {.fd = f->stop_fd, .events = POLLIN}};
		int fd;

		if (poll(p, 2, TEST_HANG_MS) <= 0 || p[1].revents)
			break;
		if (ipc_accept(f->listen_fd, &fd) == 0)
			serve(f, fd);
	}
	return NULL;
}

int fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/vfb-ctl-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
	if (ipc_listen(f->path, 0600, 8, &f->listen_fd) < 0)
		return -1;
	f->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (f->stop_fd < 0 || pthread_create(&f->th, NULL, fake_main, f) != 0)
		return -1;
	*state = f;
	return 0;
}

int fake_teardown(void **state)
{
	struct fake *f = *state;
	uint64_t one = 1;

	if (write(f->stop_fd, &one, sizeof(one)) != sizeof(one))
		return -1;
	pthread_join(f->th, NULL);
	close(f->stop_fd);
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

void drain(int fd, char *buf, size_t cap, size_t *len, bool *open_)
{
	ssize_t n = read(fd, buf + *len, cap - 1 - *len);

	if (n <= 0) {
		*open_ = false;
		return;
	}
	*len += (size_t)n;
	buf[*len] = '\0';
	if (*len + 1 >= cap)
		*open_ = false; /* enough for any test; the rest is dropped */
}

pid_t spawn(const char *const *args, int *out_fd, int *err_fd)
{
	const char *argv[32];
	int o[2], e[2];
	size_t n = 0;
	pid_t pid;

	argv[n++] = "vfio-brokerctl";
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	assert_int_equal(pipe2(o, O_CLOEXEC), 0);
	assert_int_equal(pipe2(e, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(o[1], 1);
		dup2(e[1], 2);
		execv(VB_BROKERCTL_PATH, (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	*out_fd = o[0];
	*err_fd = e[0];
	return pid;
}

/* Runs vfio-brokerctl with `args` (NULL-terminated) and collects its output and exit code. */
void run_cli(struct result *res, const char *const *args)
{
	bool oo = true, eo = true;
	size_t ol = 0, el = 0;
	int ofd, efd, st;
	pid_t pid = spawn(args, &ofd, &efd);

	res->out[0] = res->err[0] = '\0';
	while (oo || eo) {
		struct pollfd p[2] = {{.fd = oo ? ofd : -1, .events = POLLIN},
				      {.fd = eo ? efd : -1, .events = POLLIN}};

		assert_true(poll(p, 2, TEST_HANG_MS) > 0);
		if (p[0].revents)
			drain(ofd, res->out, sizeof(res->out), &ol, &oo);
		if (p[1].revents)
			drain(efd, res->err, sizeof(res->err), &el, &eo);
	}
	close(ofd);
	close(efd);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	res->code = WEXITSTATUS(st);
}

/* vfio-brokerctl's --json output, parsed back strictly (json-c: RFC 8259 only, valid UTF-8, one
 * document and nothing after it but white space); NULL when it is not that. */
struct json_object *jparse(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;
	size_t len = strlen(text), used;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	used = json_tokener_get_parse_end(tok);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	for (; o && used < len; used++)
		if (!strchr(" \t\r\n", text[used]))
			fail_msg("text after the JSON document: '%s'", text + used);
	return o;
}

/* Member `key` of object `o`, which must be there (json-c's null is NULL: see jnull). */
struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	assert_non_null(o);
	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no member '%s'", key);
	return v;
}

bool jnull(struct json_object *o, const char *key)
{
	return jget(o, key) == NULL;
}

const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	assert_true(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

double jnum(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key);

	assert_true(json_object_is_type(v, json_type_int) ||
		    json_object_is_type(v, json_type_double));
	return json_object_get_double(v);
}

struct json_object *jat(struct json_object *arr, size_t i)
{
	assert_true(json_object_is_type(arr, json_type_array));
	assert_true(i < json_object_array_length(arr));
	return json_object_array_get_idx(arr, i);
}
