/*
 * control_env: the control server of test_control.c and test_control_peers.c, on its own loop and
 * socket, with a fake daemon behind brk_ctl_ops (struct fake: what it was asked, and how it
 * answers) and one admitted-or-not client, the test's.
 */
#ifndef VB_TESTS_CONTROL_ENV_H
#define VB_TESTS_CONTROL_ENV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "control.h"
#include "ipc.h"

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

/* The fake daemon's operations (ctx: a struct fake), for a second server of a test's own. */
extern const struct brk_ctl_ops fake_ops;

/* A control server on a fresh socket, admitting `admin_uid` (and `admin_gid` when `gid_set`),
 * the test's client connected; and its end (everything closed, the socket gone). */
void env_start(struct env *e, uid_t admin_uid, bool gid_set, gid_t admin_gid);
void env_stop(struct env *e);
/* One turn of the broker's loop, once it has something to do or `fd` (when >= 0) is readable,
 * waiting for that at most until `deadline` (test_now_ms() based). */
void turn(struct env *e, int fd, int64_t deadline);
/* The broker's loop run until the client has something to read (or the peer closed). */
int pump_recv(struct env *e, struct ipc_msg **ret);
void send_req(struct env *e, uint16_t type, const ProtobufCMessage *body);
/* The next answer: an error with `code` whose message contains `text`; a reply (kept in *ret
 * when ret is not NULL); the session closed by the broker. */
void expect_error(struct env *e, int code, const char *text);
void expect_reply(struct env *e, struct ipc_msg **ret);
void expect_closed(struct env *e);
void close_pipe(int p[2]);
/* A ListDevices request from the test's client. */
void list(struct env *e);

#endif
