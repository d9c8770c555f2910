/*
 * daemon_env: the test daemon of test_daemon.c and test_daemon_adopt.c. vfio-brokerd's daemon on
 * a real event loop with a real control socket, against a fake VFIO kernel (fake_vfio.c), a fake
 * sysfs tree (sysfs_tree.c) and fake workers (its brk_worker_ops, recorded in E.workers); the
 * test plays the workers' side through the hooks the daemon gave them (w_ready, w_vmm, w_fault,
 * w_exit) and the orchestrator's through E.client.
 */
#ifndef VB_TESTS_DAEMON_ENV_H
#define VB_TESTS_DAEMON_ENV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "config.h"
#include "daemon.h"
#include "daemon_priv.h"
#include "fake_vfio.h"
#include "fdstore.h"
#include "ipc.h"
#include "registry.h"

#define DEV_A	     "0000:00:03.0"
#define DEV_B	     "0000:00:04.0"
#define DEV_A1	     "0000:00:03.1" /* DEV_A's other functions: the same IOMMU group */
#define DEV_A2	     "0000:00:03.2"
#define MAX_WORKERS  8
#define PUMP_WAIT_MS 30000

/* One fake worker: what the daemon started it with and what it did to it since. */
struct brk_worker {
	struct brk_worker_args a;
	char bdf[VB_BDF_LEN], vm[BRK_VM_NAME_MAX + 1];
	pid_t pid;
	int chan, pidfd; /* what it would give the fd store */
	bool adopted;	 /* by fw_adopt */
	bool vmm_connected, removal_requested, killed, freed;
	uint32_t removal_timeout_ms;
};

struct env {
	char dir[64], ctl_path[128], cfg_path[128];
	uv_loop_t loop;
	struct fake_vfio f;
	struct brk_config *cfg;
	struct brk_daemon *dmn;
	struct brk_fdstore *store;
	struct ipc_chan *client;
	struct brk_worker workers[MAX_WORKERS];
	unsigned nworkers;
	int start_err; /* < 0: the next start fails with it */
};

/* The one environment of the running test (env_start, teardown). */
extern struct env E;
/* The fake workers' operations, given to every daemon a test makes. */
extern const struct brk_worker_ops fake_workers;

/* The worker's side of its life, as worker.c would report it. */
void w_ready(struct brk_worker *w);
void w_vmm(struct brk_worker *w, bool connected);
void w_fault(struct brk_worker *w);
void w_exit(struct brk_worker *w);
/* The worker the daemon started last. */
struct brk_worker *last_worker(void);

/* A fresh environment with `restart_max` restarts per device (env_start: a first start, as
 * main.c runs it; env_start_as(.., false) leaves adoption to the test), and its end (the
 * cmocka teardown of every test that started one). */
void env_start_as(unsigned restart_max, bool first_start);
void env_start(unsigned restart_max);
int teardown(void **state);

/* The orchestrator's side: requests sent from E.client, the daemon's loop run until an answer
 * comes (pump, expect_reply: a reply; expect_error: an error with `code` and `text`), or until
 * it took in what was sent (settle). */
struct ipc_msg *pump(void);
void settle(void);
void send_ctl(uint16_t type, const ProtobufCMessage *req);
void send_add(const char *bdf, const char *vm, uint32_t maxmap);
void send_remove(const char *bdf, bool force);
struct ipc_msg *expect_reply(void);
void expect_error(int code, const char *text);

/* The daemon's record of `bdf`, and its VM's. */
struct brk_dev_rec *dev(const char *bdf);
struct dmn_vm *vm_of(const char *bdf);
/* AddDevice up to READY: the reply comes only once the worker acknowledged its handoff. */
struct brk_worker *add_ready(const char *bdf, const char *vm, uint32_t maxmap);

#endif
