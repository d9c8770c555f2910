/*
 * test_client_uv: libvfiobroker's event fd inside a libuv loop, the way a libuv-based VMM would
 * use it: a uv_poll_t on vfb_dev_event_fd(), vfb_dev_next_event() until -EAGAIN in its callback.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "device.pb-c.h"
#include "test_client_fake.h"
#include "vfiobroker/client.h"

struct vmm {
	struct vfb_dev *dev;
	uv_poll_t poll;
	uv_timer_t guard;
	int events;
	int last_kind;
	int hangup;
	bool timed_out;
};

static void on_event_fd(uv_poll_t *p, int status, int revents)
{
	struct vmm *v = p->data;
	struct vfb_event ev;
	int r;

	while ((r = vfb_dev_next_event(v->dev, &ev)) == 0) {
		v->events++;
		v->last_kind = (int)ev.kind;
		if (ev.kind == VFB_EVENT_REMOVAL_REQUESTED)
			vfb_dev_removal_ack(v->dev);
	}
	if (r == -EPIPE || r == -ECONNRESET) {
		v->hangup = 1;
		uv_poll_stop(p);
		uv_timer_stop(&v->guard);
	} else if (v->events > 0) {
		uv_poll_stop(p);
		uv_timer_stop(&v->guard);
	}
}

static void on_guard(uv_timer_t *t)
{
	struct vmm *v = t->data;

	v->timed_out = true;
	uv_poll_stop(&v->poll);
}

static void run_loop(struct vmm *v)
{
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_poll_init(&loop, &v->poll, vfb_dev_event_fd(v->dev)), 0);
	assert_int_equal(uv_timer_init(&loop, &v->guard), 0);
	v->poll.data = v;
	v->guard.data = v;
	assert_int_equal(uv_poll_start(&v->poll, UV_READABLE, on_event_fd), 0);
	assert_int_equal(uv_timer_start(&v->guard, on_guard, 5000, 0), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&v->poll, NULL);
	uv_close((uv_handle_t *)&v->guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_client_uv_poll_receives_queued_event(void **state)
{
	struct fake f = {.event_before_type = VB__DEV__TYPE__RESET};
	struct vmm v = {.dev = connect_fake(&f)};

	/* The event is read (and queued) during the call; the socket itself is then quiet. */
	assert_int_equal(vfb_dev_reset(v.dev), 0);
	run_loop(&v);
	assert_false(v.timed_out);
	assert_int_equal(v.events, 1);
	assert_int_equal(v.last_kind, VFB_EVENT_REMOVAL_REQUESTED);
	vfb_dev_close(v.dev);
	fake_join(&f);
	assert_int_equal(f.requests, 3); /* HELLO, RESET, and the REMOVAL_ACK from the callback */
}

static void test_client_uv_poll_receives_event_from_socket(void **state)
{
	struct fake f = {.event_after_type = VB__DEV__TYPE__RESET};
	struct vmm v = {.dev = connect_fake(&f)};

	assert_int_equal(vfb_dev_reset(v.dev), 0);
	run_loop(&v);
	assert_false(v.timed_out);
	assert_int_equal(v.events, 1);
	vfb_dev_close(v.dev);
	fake_join(&f);
}

static void test_client_uv_poll_sees_worker_hangup(void **state)
{
	struct fake f = {.hangup_after_hello = true};
	struct vmm v = {.dev = connect_fake(&f)};

	fake_join(&f);
	run_loop(&v);
	assert_false(v.timed_out);
	assert_int_equal(v.hangup, 1);
	assert_int_equal(v.events, 0);
	vfb_dev_close(v.dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_uv_poll_receives_queued_event),
	    cmocka_unit_test(test_client_uv_poll_receives_event_from_socket),
	    cmocka_unit_test(test_client_uv_poll_sees_worker_hangup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
