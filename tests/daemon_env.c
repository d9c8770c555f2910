/*
 * daemon_env: the test daemon and its fake workers (daemon_env.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "base.h"
#include "common.pb-c.h"
#include "control.pb-c.h"
#include "daemon.h"
#include "daemon_priv.h"
#include "fake_vfio.h"
#include "fdstore.h"
#include "record.h"
#include "ipc.h"
#include "log.h"
#include "sysfs_tree.h"
#include "test_memfd.h"
#include "daemon_env.h"

struct env E;

/* ---- the fake workers ------------------------------------------------------------------------ */

/* The next fake worker, with its own copies of the names in args. */
static struct brk_worker *fw_new(const struct brk_worker_args *args)
{
	struct brk_worker *w;

	assert_true(E.nworkers < MAX_WORKERS);
	w = &E.workers[E.nworkers++];
	memset(w, 0, sizeof(*w));
	w->a = *args;
	snprintf(w->bdf, sizeof(w->bdf), "%s", args->bdf);
	snprintf(w->vm, sizeof(w->vm), "%s", args->vm);
	w->a.bdf = w->bdf;
	w->a.vm = w->vm;
	return w;
}

static int fw_start(uv_loop_t *loop, const struct brk_worker_args *args, struct brk_worker **ret,
		    struct vb_err *err)
{
	struct brk_worker *w;

	if (E.start_err < 0) {
		int r = E.start_err;

		E.start_err = 0;
		return vb_errf(err, r, "fake start refused");
	}
	w = fw_new(args);
	w->pid = 4000 + (pid_t)E.nworkers;
	w->chan = eventfd(0, EFD_CLOEXEC);
	w->pidfd = eventfd(0, EFD_CLOEXEC);
	assert_true(w->chan >= 0 && w->pidfd >= 0);
	*ret = w;
	return 0;
}

/* Takes over a worker a previous broker started: owns pidfd and chan from here on. */
static int fw_adopt(uv_loop_t *loop, const struct brk_worker_args *args, pid_t pid, int pidfd,
		    int chan, struct brk_worker **ret, struct vb_err *err)
{
	struct brk_worker *w;

	w = fw_new(args);
	w->pid = pid;
	w->chan = chan;
	w->pidfd = pidfd;
	w->adopted = true;
	*ret = w;
	return 0;
}

static int fw_request_removal(struct brk_worker *w, uint32_t timeout_ms)
{
	assert_false(w->freed);
	w->removal_requested = true;
	w->removal_timeout_ms = timeout_ms;
	return 0;
}

static void fw_kill(struct brk_worker *w)
{
	assert_false(w->freed);
	w->killed = true;
}

static void fw_free(struct brk_worker *w)
{
	if (!w)
		return;
	w->freed = true;
	close(w->chan);
	close(w->pidfd);
	w->chan = w->pidfd = -1;
}

static void fw_fds(const struct brk_worker *w, int *chan, int *pidfd)
{
	assert_false(w->freed);
	*chan = w->chan;
	*pidfd = w->pidfd;
}

static pid_t fw_pid(const struct brk_worker *w)
{
	return w->pid;
}

static bool fw_vmm_connected(const struct brk_worker *w)
{
	return w->vmm_connected;
}

const struct brk_worker_ops fake_workers = {
    .start = fw_start,
    .request_removal = fw_request_removal,
    .kill = fw_kill,
    .free = fw_free,
    .pid = fw_pid,
    .vmm_connected = fw_vmm_connected,
    .fds = fw_fds,
    .adopt = fw_adopt,
};

/* The worker's side of its life, as worker.c would report it. */
void w_ready(struct brk_worker *w)
{
	w->a.hooks->ready(w->a.ctx);
}

void w_vmm(struct brk_worker *w, bool connected)
{
	w->vmm_connected = connected;
	w->a.hooks->vmm_state(w->a.ctx, connected, 777, 0);
}

void w_fault(struct brk_worker *w)
{
	w->killed = true;
	w->a.hooks->fault(w->a.ctx, BRK_WORKER_CRASHED, "killed by signal 11");
}

void w_exit(struct brk_worker *w)
{
	w->a.hooks->exited(w->a.ctx, -1, 9);
}

struct brk_worker *last_worker(void)
{
	assert_true(E.nworkers > 0);
	return &E.workers[E.nworkers - 1];
}

/* ---- the environment ------------------------------------------------------------------------- */

static void edu_like(struct fake_vfio *f)
{
	uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

	fake_region_plain(f, 0, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x100000, 0);
	fake_region_plain(f, VFIO_PCI_CONFIG_REGION_INDEX, rw, 0x1000, 7ull << 40);
	fake_irq(f, VFIO_PCI_INTX_IRQ_INDEX,
		 VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1);
	fake_irq(f, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1);
}

static void pci_device(const char *bdf, int group)
{
	char rel[128];

	tree_pci_device(E.f.root, bdf, "vfio-pci", group);
	snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s/vendor", bdf);
	tree_file(E.f.root, rel, "0x1234\n");
	snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s/device", bdf);
	tree_file(E.f.root, rel, "0x11e8\n");
}

/* first_start: run brk_daemon_adopt with nothing passed, as main.c does on a first start;
 * false leaves adoption to the test. */
void env_start_as(unsigned restart_max, bool first_start)
{
	static struct brk_daemon_env denv;
	struct vb_err err = {0};
	char text[512];
	FILE *fp;
	int lfd, cfd;

	memset(&E, 0, sizeof(E));
	snprintf(E.dir, sizeof(E.dir), "/tmp/test_daemon.XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	fake_vfio_init(&E.f);
	tree_new(E.f.root, sizeof(E.f.root));
	edu_like(&E.f);
	E.f.cfg_offset = 7ull << 40; /* config space behind the config region (Command register) */
	pci_device(DEV_A, 5);
	pci_device(DEV_A1, 5);
	pci_device(DEV_A2, 5);
	pci_device(DEV_B, 6);

	/* The runtime directory exists before the broker starts (tmpfiles.d, main.c's mkdir). */
	snprintf(text, sizeof(text), "%s/vmm", E.dir);
	assert_int_equal(mkdir(text, 0755), 0);
	snprintf(E.cfg_path, sizeof(E.cfg_path), "%s/broker.conf", E.dir);
	snprintf(text, sizeof(text),
		 "[broker]\nadmin_uid = 0\nruntime_dir = %s/vmm\n"
		 "[devices]\nallow = 1234:11e8\n"
		 "[worker]\nuid_range = 61000-61999\nrestart = on-failure\nrestart_max = %u\n",
		 E.dir, restart_max);
	fp = fopen(E.cfg_path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	if (brk_config_load(E.cfg_path, &E.cfg, &err) < 0)
		fail_msg("config: %s", err.msg);

	assert_int_equal(uv_loop_init(&E.loop), 0);
	snprintf(E.ctl_path, sizeof(E.ctl_path), "%s/control.sock", E.dir);
	assert_int_equal(ipc_listen(E.ctl_path, 0600, 8, &lfd), 0);
	/* The table of a broker that could re-exec; the systemd side is test_fdstore's. */
	assert_int_equal(brk_fdstore_new(false, 0, &E.store), 0);
	denv = (struct brk_daemon_env){.sys = &E.f.sys, .workers = &fake_workers, .store = E.store};
	assert_int_equal(brk_daemon_new(&E.loop, E.cfg, lfd, &denv, &E.dmn), 0);
	if (first_start) {
		/* A first start, as main.c runs it: nothing passed, a new state record. */
		struct brk_fdstore_set none = {0};

		brk_daemon_adopt(E.dmn, &none);
		assert_non_null(E.dmn->rec);
	}
	assert_int_equal(ipc_connect(E.ctl_path, &cfd), 0);
	assert_int_equal(ipc_chan_new(cfd, &ipc_proto_control, NULL, &E.client), 0);
}

int teardown(void **state)
{
	char cmd[128];

	ipc_chan_free(E.client);
	brk_daemon_free(E.dmn);
	/* Everything given back was taken out of the store first. */
	assert_int_equal(brk_fdstore_count(E.store), 0);
	brk_fdstore_free(E.store);
	for (int i = 0; i < 100 && uv_run(&E.loop, UV_RUN_NOWAIT); i++)
		;
	uv_loop_close(&E.loop);
	brk_config_free(E.cfg);
	tree_free(E.f.root);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

void env_start(unsigned restart_max)
{
	env_start_as(restart_max, true);
}

/* Runs the daemon's loop until the client has a message. Waits on the socket, not on a clock:
 * the bound only ends a test that would otherwise hang. */
struct ipc_msg *pump(void)
{
	struct ipc_msg *m = NULL;

	for (int waited = 0; waited < PUMP_WAIT_MS; waited += 10) {
		struct pollfd p = {.fd = ipc_chan_fd(E.client), .events = POLLIN};
		int r;

		uv_run(&E.loop, UV_RUN_NOWAIT);
		r = ipc_chan_recv(E.client, &m);
		if (r == 0)
			return m;
		assert_int_equal(r, -EAGAIN);
		poll(&p, 1, 10);
	}
	fail_msg("no answer from the daemon");
	return NULL;
}

/* Lets the daemon take in what the client sent, when no answer is due yet. */
void settle(void)
{
	for (int i = 0; i < 50; i++)
		uv_run(&E.loop, UV_RUN_NOWAIT);
}

/* Sends one control request from the test's client; its answer is pump()'s to read. */
void send_ctl(uint16_t type, const ProtobufCMessage *req)
{
	uint32_t id;

	assert_int_equal(ipc_chan_request(E.client, type, req, NULL, 0, &id), 0);
}

void send_add(const char *bdf, const char *vm, uint32_t maxmap)
{
	Vb__Ctl__AddDevice req = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__DeviceLimits lim = VB__CTL__DEVICE_LIMITS__INIT;

	req.bdf = (char *)bdf;
	req.vm = (char *)vm;
	req.allow_mmap = true;
	if (maxmap) {
		lim.max_dma_mappings = maxmap;
		req.limits = &lim;
	}
	send_ctl(VB__CTL__TYPE__ADD_DEVICE, &req.base);
}

void send_remove(const char *bdf, bool force)
{
	Vb__Ctl__RemoveDevice req = VB__CTL__REMOVE_DEVICE__INIT;

	req.bdf = (char *)bdf;
	req.force = force;
	send_ctl(VB__CTL__TYPE__REMOVE_DEVICE, &req.base);
}

struct ipc_msg *expect_reply(void)
{
	struct ipc_msg *m = pump();

	if (m->kind != IPC_KIND_REPLY)
		fail_msg("expected a reply, got kind %u: %s", m->kind,
			 m->kind == IPC_KIND_ERROR ? ((const Vb__Error *)m->body)->message : "");
	return m;
}

void expect_error(int code, const char *text)
{
	struct ipc_msg *m = pump();
	const Vb__Error *er;

	assert_int_equal(m->kind, IPC_KIND_ERROR);
	er = (const Vb__Error *)m->body;
	/* The wire carries the positive errno. */
	assert_int_equal(er->code, -code);
	if (!strstr(er->message, text))
		fail_msg("error '%s' lacks '%s'", er->message, text);
	ipc_msg_free(m);
}

struct brk_dev_rec *dev(const char *bdf)
{
	return brk_registry_find(E.dmn->reg, bdf);
}

struct dmn_vm *vm_of(const char *bdf)
{
	return dev(bdf)->vm->priv;
}

/* AddDevice up to READY: the reply comes only once the worker acknowledged its handoff. */
struct brk_worker *add_ready(const char *bdf, const char *vm, uint32_t maxmap)
{
	const Vb__Ctl__AddDeviceReply *rep;
	struct brk_worker *w;
	struct ipc_msg *m;
	struct stat st;

	send_add(bdf, vm, maxmap);
	settle();
	w = last_worker();
	assert_string_equal(w->a.bdf, bdf);
	assert_int_equal(dev(bdf)->state, BRK_DEV_STARTING);
	w_ready(w);
	m = expect_reply();
	rep = (const Vb__Ctl__AddDeviceReply *)m->body;
	assert_int_equal(rep->worker_pid, (uint32_t)w->pid);
	assert_int_equal(stat(rep->socket_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	ipc_msg_free(m);
	assert_int_equal(dev(bdf)->state, BRK_DEV_READY);
	return w;
}
