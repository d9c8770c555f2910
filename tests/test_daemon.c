/*
 * test_daemon: vfio-brokerd's flows on the host. The daemon runs on a real event loop with a real
 * control socket, against a fake VFIO kernel (fake_vfio.c), a fake sysfs tree (sysfs_tree.c) and
 * fake workers (its brk_worker_ops): each test plays the workers' side through the hooks the
 * daemon gave them (ready, VMM state, fault, exit) and checks what the daemon did: replies,
 * device states, which workers it started, asked, killed or freed, and what it gave back.
 * Add, hot-plug into a running VM, remove, fault and restart, restart exhausted, quota mismatch,
 * stale replacement, and every transition of the device state machine, allowed or not.
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

static struct env E;

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

static const struct brk_worker_ops fake_workers = {
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
static void w_ready(struct brk_worker *w)
{
	w->a.hooks->ready(w->a.ctx);
}

static void w_vmm(struct brk_worker *w, bool connected)
{
	w->vmm_connected = connected;
	w->a.hooks->vmm_state(w->a.ctx, connected, 777, 0);
}

static void w_fault(struct brk_worker *w)
{
	w->killed = true;
	w->a.hooks->fault(w->a.ctx, BRK_WORKER_CRASHED, "killed by signal 11");
}

static void w_exit(struct brk_worker *w)
{
	w->a.hooks->exited(w->a.ctx, -1, 9);
}

static struct brk_worker *last_worker(void)
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
static void env_start_as(unsigned restart_max, bool first_start)
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

static int teardown(void **state)
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

static void env_start(unsigned restart_max)
{
	env_start_as(restart_max, true);
}

/* Runs the daemon's loop until the client has a message. Waits on the socket, not on a clock:
 * the bound only ends a test that would otherwise hang. */
static struct ipc_msg *pump(void)
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
static void settle(void)
{
	for (int i = 0; i < 50; i++)
		uv_run(&E.loop, UV_RUN_NOWAIT);
}

/* Sends one control request from the test's client; its answer is pump()'s to read. */
static void send_ctl(uint16_t type, const ProtobufCMessage *req)
{
	uint32_t id;

	assert_int_equal(ipc_chan_request(E.client, type, req, NULL, 0, &id), 0);
}

static void send_add(const char *bdf, const char *vm, uint32_t maxmap)
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

static void send_remove(const char *bdf, bool force)
{
	Vb__Ctl__RemoveDevice req = VB__CTL__REMOVE_DEVICE__INIT;

	req.bdf = (char *)bdf;
	req.force = force;
	send_ctl(VB__CTL__TYPE__REMOVE_DEVICE, &req.base);
}

static struct ipc_msg *expect_reply(void)
{
	struct ipc_msg *m = pump();

	if (m->kind != IPC_KIND_REPLY)
		fail_msg("expected a reply, got kind %u: %s", m->kind,
			 m->kind == IPC_KIND_ERROR ? ((const Vb__Error *)m->body)->message : "");
	return m;
}

static void expect_error(int code, const char *text)
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

static struct brk_dev_rec *dev(const char *bdf)
{
	return brk_registry_find(E.dmn->reg, bdf);
}

static struct dmn_vm *vm_of(const char *bdf)
{
	return dev(bdf)->vm->priv;
}

/* AddDevice up to READY: the reply comes only once the worker acknowledged its handoff. */
static struct brk_worker *add_ready(const char *bdf, const char *vm, uint32_t maxmap)
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

/* ---- flows ----------------------------------------------------------------------------------- */

static void test_daemon_add_replies_when_worker_ready(void **state)
{
	struct brk_worker *w;

	env_start(3);
	w = add_ready(DEV_A, "vm1", 0);
	assert_string_equal(w->a.vm, "vm1");
	assert_int_equal(w->a.generation, 0);
	assert_true(w->a.allow_mmap);
	assert_int_equal(w->a.max_dma_mappings, E.cfg->max_dma_mappings);
	assert_false(((struct dmn_assignment *)dev(DEV_A)->priv)->hotplug);
	/* One container, one group attached, one device handle. */
	assert_int_equal(fake_vfio_count(&E.f, VFIO_SET_IOMMU), 1);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_SET_CONTAINER), 1);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_GET_DEVICE_FD), 1);
	assert_int_equal(vm_of(DEV_A)->live, 1);
}

static void test_daemon_hotplug_into_running_vm_shares_its_container(void **state)
{
	struct brk_worker *a, *b;

	env_start(3);
	a = add_ready(DEV_A, "vm1", 100);
	w_vmm(a, true);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_CONNECTED);
	/* Hot-plug: a second device for the running VM, without limits of its own. */
	b = add_ready(DEV_B, "vm1", 0);
	assert_true(((struct dmn_assignment *)dev(DEV_B)->priv)->hotplug);
	assert_ptr_equal(b->a.dma, a->a.dma);
	assert_int_equal(b->a.max_dma_mappings, 100);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_SET_IOMMU), 1);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_SET_CONTAINER), 2);
	assert_int_equal(vm_of(DEV_A)->live, 2);
	/* The running device was not disturbed. */
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_CONNECTED);
	assert_false(a->killed);
}

static void test_daemon_quota_mismatch_refused_changes_nothing(void **state)
{
	env_start(3);
	add_ready(DEV_A, "vm1", 100);
	send_add(DEV_B, "vm1", 200);
	expect_error(-EBUSY, "set by its first device");
	assert_null(dev(DEV_B));
	assert_int_equal(E.nworkers, 1);
	assert_int_equal(brk_registry_ndevices(E.dmn->reg), 1);
	assert_int_equal(dev(DEV_A)->vm->max_dma_mappings, 100);
	assert_int_equal(vm_of(DEV_A)->live, 1);
	/* Refused before its group was attached to the VM's container. */
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_SET_CONTAINER), 1);
}

static void test_daemon_remove_connected_asks_vmm_then_forgets(void **state)
{
	const Vb__Ctl__RemoveDeviceReply *rep;
	struct brk_worker *w;
	struct ipc_msg *m;

	env_start(3);
	w = add_ready(DEV_A, "vm1", 0);
	w_vmm(w, true);
	send_remove(DEV_A, false);
	settle();
	assert_true(w->removal_requested);
	assert_int_equal(w->removal_timeout_ms, E.cfg->remove_timeout_ms);
	assert_false(w->killed);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_REMOVING);
	/* A second removal while the first runs is refused. */
	send_remove(DEV_A, false);
	expect_error(-EALREADY, "already being removed");
	w->a.hooks->removal_done(w->a.ctx, true);
	assert_true(w->killed);
	w_exit(w);
	m = expect_reply();
	rep = (const Vb__Ctl__RemoveDeviceReply *)m->body;
	assert_true(rep->vmm_acknowledged);
	ipc_msg_free(m);
	assert_true(w->freed);
	assert_null(dev(DEV_A));
	assert_int_equal(brk_registry_nvms(E.dmn->reg), 0);
	/* Reset once the worker was gone (and once at add). */
	assert_int_equal(fake_vfio_count(&E.f, VFIO_DEVICE_RESET), 2);
}

/* Issue 13 #4: a group belongs to one VM. Another VM asking for a device of it is refused with
 * the holder and the rule, before anything is opened; the holder's VM may have it. */
static void test_daemon_group_of_other_vm_refused_naming_it(void **state)
{
	struct ipc_msg *m;
	const char *msg;
	unsigned opens;

	env_start(3);
	add_ready(DEV_A, "vm1", 0);
	opens = fake_vfio_count(&E.f, VFIO_GROUP_GET_STATUS);
	send_add(DEV_A1, "vm2", 0);
	expect_error(-EBUSY, "IOMMU group 5 belongs to vm vm1 (" DEV_A ")");
	assert_null(dev(DEV_A1));
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_GET_STATUS), opens);
	add_ready(DEV_A1, "vm1", 0);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_SET_CONTAINER), 1);
	/* With two of its devices in vm1 the refusal names both. */
	send_add(DEV_A2, "vm2", 0);
	m = pump();
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	msg = ((const Vb__Error *)m->body)->message;
	if (!strstr(msg, "belongs to vm vm1 (") || !strstr(msg, DEV_A) || !strstr(msg, DEV_A1) ||
	    !strstr(msg, "belongs to one VM"))
		fail_msg("refusal '%s' does not name both of vm1's devices and the rule", msg);
	ipc_msg_free(m);
}

/* A refused AddDevice leaves the fd store as it was: the group another VM holds keeps its fd
 * there, so a restart still finds it. */
static void test_daemon_group_of_other_vm_refused_keeps_its_stored_fd(void **state)
{
	size_t stored;
	int fd;

	(void)state;

	env_start(3);
	add_ready(DEV_A, "vm1", 0);
	fd = brk_fdstore_get(E.store, "grp.5");
	assert_true(fd >= 0);
	stored = brk_fdstore_count(E.store);
	send_add(DEV_A1, "vm2", 0);
	expect_error(-EBUSY, "IOMMU group 5 belongs to vm vm1");
	assert_int_equal(brk_fdstore_get(E.store, "grp.5"), fd);
	assert_int_equal(brk_fdstore_count(E.store), stored);
}

/* Issue 13 #3: at removal the broker turns decoding off (what revokes a grant holder's mappings)
 * and, when the holder keeps the group open, names it in the next AddDevice's refusal; once the
 * holder lets go the device can go to another VM. */
static void test_daemon_removal_revokes_grant_and_names_holder(void **state)
{
	struct dmn_assignment *dd;
	struct brk_worker *w;
	int gfd;

	env_start(3);
	E.f.cfg[4] = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	w = add_ready(DEV_A, "vm1", 0);
	w_vmm(w, true);
	/* What worker.c does at VMM_ADMIT for a device with allow_mmap. */
	dd = dev(DEV_A)->priv;
	assert_int_equal(brk_vfio_dev_grant(dd->device, 4242, 1000, &gfd, NULL), 0);
	close(gfd);
	/* The VMM keeps its grant: the kernel keeps the group open and attached. */
	E.f.unset_container_err = -EBUSY;
	E.f.group_busy = true;
	E.f.busy_group = 5;
	send_remove(DEV_A, true);
	settle();
	assert_true(w->killed);
	w_exit(w);
	ipc_msg_free(expect_reply());
	assert_int_equal(E.f.cfg[4] & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER), 0);
	send_add(DEV_A, "vm2", 0);
	expect_error(-EBUSY, "IOMMU group 5 is still open: the mmap grant of " DEV_A
			     " (vm vm1) went to VMM pid 4242 (uid 1000)");
	assert_null(dev(DEV_A));
	/* The holder closed it. */
	E.f.group_busy = false;
	E.f.unset_container_err = 0;
	add_ready(DEV_A, "vm2", 0);
}

static void test_daemon_fault_restarts_worker_next_generation(void **state)
{
	struct brk_worker *w, *w2;

	env_start(1);
	w = add_ready(DEV_A, "vm1", 0);
	w_vmm(w, true);
	w_fault(w);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_FAILING);
	assert_int_equal(brk_dev_state_wire(dev(DEV_A)->state), BRK_DEV_FAULTED);
	assert_string_equal(dev(DEV_A)->last_fault, "killed by signal 11");
	assert_int_equal(E.nworkers, 1);
	w_exit(w);
	assert_int_equal(E.nworkers, 2);
	w2 = last_worker();
	assert_int_equal(w2->a.generation, 1);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_STARTING);
	assert_int_equal(dev(DEV_A)->restarts, 1);
	w_ready(w2);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_READY);
	assert_int_equal(dev(DEV_A)->worker_pid, w2->pid);
}

/* Every fd a later broker needs is in the store while its object lives, and leaves it before the
 * object goes: container, group (once for the devices sharing it), device, worker channel and
 * pidfd, a restarted worker's replacing its predecessor's. */
static void test_daemon_store_holds_every_fd_while_its_object_lives(void **state)
{
	struct brk_worker *a, *a1, *a2;
	struct dmn_assignment *dd;

	env_start(3);
	a = add_ready(DEV_A, "vm1", 0);
	dd = dev(DEV_A)->priv;
	assert_int_equal(brk_fdstore_get(E.store, "state"), brk_record_fd(E.dmn->rec));
	assert_int_equal(brk_fdstore_count(E.store), 6);
	assert_int_equal(brk_fdstore_get(E.store, "ctr.vm1"),
			 brk_container_fd(vm_of(DEV_A)->container));
	assert_int_equal(brk_fdstore_get(E.store, "grp.5"), brk_group_fd(dd->grp->g));
	assert_int_equal(brk_fdstore_get(E.store, "dev.0000-00-03.0"), brk_vfio_dev_fd(dd->device));
	assert_int_equal(brk_fdstore_get(E.store, "wch.0000-00-03.0"), a->chan);
	assert_int_equal(brk_fdstore_get(E.store, "wpid.0000-00-03.0"), a->pidfd);
	a1 = add_ready(DEV_A1, "vm1", 0); /* the same group and container */
	assert_int_equal(brk_fdstore_count(E.store), 9);
	w_fault(a);
	w_exit(a);
	a2 = last_worker();
	assert_ptr_not_equal(a2, a);
	assert_int_equal(brk_fdstore_count(E.store), 9);
	assert_int_equal(brk_fdstore_get(E.store, "wch.0000-00-03.0"), a2->chan);
	assert_int_equal(brk_fdstore_get(E.store, "wpid.0000-00-03.0"), a2->pidfd);
	send_remove(DEV_A1, true);
	settle();
	assert_true(a1->killed);
	w_exit(a1);
	ipc_msg_free(expect_reply());
	assert_int_equal(brk_fdstore_count(E.store), 6);
	assert_int_equal(brk_fdstore_get(E.store, "dev.0000-00-03.1"), -ENOENT);
	assert_true(brk_fdstore_get(E.store, "grp.5") >= 0);
}

/* ---- adoption ------------------------------------------------------------------------------ */

/* A set of fds as brk_fdstore_receive() returns them, built here: name and fd pairs. */
static struct brk_fdstore_set *passed_set(const char *const *names, const int *fds, size_t n)
{
	struct brk_fdstore_set *set = calloc(1, sizeof(*set));

	assert_non_null(set);
	set->e = calloc(n, sizeof(*set->e));
	assert_non_null(set->e);
	for (size_t i = 0; i < n; i++) {
		set->e[i].name = strdup(names[i]);
		set->e[i].fd = fds[i];
	}
	set->n = n;
	return set;
}

/* The daemon's store, under a fake systemd (NOTIFY_SOCKET bound here) until fake_systemd_end(). */
static int fake_systemd(struct brk_fdstore **store)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", E.dir);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", sa.sun_path, 1), 0);
	assert_int_equal(brk_fdstore_new(true, 0, store), 0);
	E.dmn->store = *store;
	return fd;
}

static void fake_systemd_end(int fd, struct brk_fdstore *store)
{
	E.dmn->store = E.store;
	brk_fdstore_free(store);
	unsetenv("NOTIFY_SOCKET");
	close(fd);
}

static int fake_node(const char *node)
{
	char path[256];
	int fd;

	assert_int_equal(brk_sys_path(&E.f.sys, path, sizeof(path), "%s", node), 0);
	fd = E.f.sys.open(E.f.sys.ctx, path, O_RDWR);
	assert_true(fd >= 0);
	return fd;
}

/* The fds a broker kept for one edu device in vm1 and no state record (or one that did not load):
 * the worker is ended, the device's interrupts turned off and the device reset, the container's
 * DMA unmapped while its group is attached, the group detached, every fd closed; an fd that is
 * not what its name says (a stale one) gets no ioctl at all. */
static void test_daemon_adopt_no_record_quiesces_everything(void **state)
{
	const char *const names[] = {"ctr.vm1",		  "grp.5",
				     "dev.0000-00-03.0",  "wch.0000-00-03.0",
				     "wpid.0000-00-03.0", "dev.0000-00-04.0"};
	int fds[ARRAY_SIZE(names)], ctr, grp, devfd, stale, notify;
	struct brk_fdstore *sd_store;
	struct brk_fdstore_set *set;
	const struct fake_call *c;
	unsigned ncalls;

	env_start_as(3, false);
	ctr = fds[0] = fake_node("/dev/vfio/vfio");
	grp = fds[1] = fake_node("/dev/vfio/5");
	devfd = fds[2] = E.f.sys.ioctl(E.f.sys.ctx, grp, VFIO_GROUP_GET_DEVICE_FD, DEV_A);
	assert_true(devfd >= 0);
	fds[3] = eventfd(0, EFD_CLOEXEC);
	fds[4] = eventfd(0, EFD_CLOEXEC);
	fake_vfio_fd(&E.f, fds[4], NULL, -1); /* the worker has exited already */
	stale = fds[5] = open("/dev/null", O_RDWR | O_CLOEXEC);
	ncalls = E.f.ncalls;
	set = passed_set(names, fds, ARRAY_SIZE(names));
	notify = fake_systemd(&sd_store);
	brk_daemon_adopt(E.dmn, set);
	/* systemd keeps what the last broker stored until told: every name leaves its store. */
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char text[128], want[128];
		ssize_t n = recv(notify, text, sizeof(text) - 1, MSG_DONTWAIT);

		assert_true(n > 0);
		text[n] = '\0';
		snprintf(want, sizeof(want), "FDSTOREREMOVE=1\nFDNAME=%s", names[i]);
		assert_string_equal(text, want);
	}
	/* Then a new record for what this broker does from now on, in the store first. */
	{
		char text[128];
		ssize_t n = recv(notify, text, sizeof(text) - 1, MSG_DONTWAIT);

		assert_true(n > 0);
		text[n] = '\0';
		assert_string_equal(text, "FDSTORE=1\nFDPOLL=0\nFDNAME=state");
	}
	assert_true(recv(notify, &(char){0}, 1, MSG_DONTWAIT) < 0);
	assert_non_null(E.dmn->rec);
	fake_systemd_end(notify, sd_store);
	/* Every MSI/MSI-X/INTx/ERR/REQ trigger off, then the reset, all on the device fd. */
	assert_int_equal(fake_vfio_count(&E.f, VFIO_DEVICE_SET_IRQS), VFIO_PCI_NUM_IRQS);
	for (unsigned i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		c = fake_vfio_nth(&E.f, VFIO_DEVICE_SET_IRQS, i);
		assert_int_equal(c->fd, devfd);
		assert_int_equal(c->index, i);
		assert_int_equal(c->count, 0);
		assert_int_equal(c->flags, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER);
	}
	c = fake_vfio_nth(&E.f, VFIO_DEVICE_RESET, 0);
	assert_non_null(c);
	assert_int_equal(c->fd, devfd);
	c = fake_vfio_nth(&E.f, VFIO_IOMMU_UNMAP_DMA, 0);
	assert_non_null(c);
	assert_int_equal(c->fd, ctr);
	assert_int_equal(c->flags, VFIO_DMA_UNMAP_FLAG_ALL);
	c = fake_vfio_nth(&E.f, VFIO_GROUP_UNSET_CONTAINER, 0);
	assert_non_null(c);
	assert_int_equal(c->fd, grp);
	for (unsigned i = ncalls; i < E.f.ncalls; i++)
		assert_int_not_equal(E.f.calls[i].fd, stale);
	/* The unmap came while the group was still attached. */
	for (unsigned i = ncalls; i < E.f.ncalls; i++) {
		if (E.f.calls[i].req == VFIO_GROUP_UNSET_CONTAINER)
			fail_msg("group detached before the DMA was unmapped");
		if (E.f.calls[i].req == VFIO_IOMMU_UNMAP_DMA)
			break;
	}
	for (size_t i = 0; i < set->n; i++)
		assert_int_equal(set->e[i].fd, -1);
	assert_true(fcntl(devfd, F_GETFD) < 0 && fcntl(stale, F_GETFD) < 0);
	brk_fdstore_set_free(set);
	assert_true(E.dmn->adopt.attempted);
	assert_int_equal(E.dmn->adopt.quiesced, 1);
	assert_int_equal(E.dmn->adopt.adopted, 0);
	assert_non_null(strstr(E.dmn->adopt.untrusted, "no state record"));
	assert_int_equal(brk_registry_ndevices(E.dmn->reg), 0);
}

/* Nothing passed: a first start, not an adoption. */
static void test_daemon_adopt_nothing_passed_is_a_first_start(void **state)
{
	struct brk_fdstore_set *set;

	env_start_as(3, false);
	set = passed_set(NULL, NULL, 0);
	brk_daemon_adopt(E.dmn, set);
	brk_fdstore_set_free(set);
	assert_false(E.dmn->adopt.attempted);
	assert_int_equal(E.dmn->adopt.untrusted[0], '\0');
	assert_int_equal(E.f.ncalls, 0);
}

static struct brk_rec_state *record_now(void)
{
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};

	if (brk_record_load(brk_record_fd(E.dmn->rec), &st, &err) < 0)
		fail_msg("record: %s", err.msg);
	return st;
}

/* The state record says what a next broker needs, as it changes: the VM with its quotas and
 * owner, each device with its state, DMA owner id, worker and generation; a removed device and
 * a VM without devices leave it. */
static void test_daemon_record_follows_vms_and_devices(void **state)
{
	const struct brk_rec_dev *rd;
	const struct brk_rec_vm *rv;
	struct brk_rec_state *st;
	struct brk_worker *a, *a2, *b;

	env_start(3);
	a = add_ready(DEV_A, "vm1", 100);
	b = add_ready(DEV_B, "vm1", 0);
	w_vmm(b, true);
	w_fault(a);
	w_exit(a);
	a2 = last_worker();
	w_ready(a2);
	st = record_now();
	assert_int_equal(st->starts, 1);
	rv = brk_rec_state_vm(st, "vm1");
	assert_non_null(rv);
	assert_int_equal(rv->max_mappings, 100);
	assert_int_equal(st->ndevs, 2);
	rd = brk_rec_state_dev(st, DEV_A);
	assert_non_null(rd);
	assert_string_equal(rd->vm, "vm1");
	assert_int_equal(rd->state, BRK_DEV_READY);
	assert_int_equal(rd->id, dev(DEV_A)->id);
	assert_int_equal(rd->worker_pid, (uint32_t)a2->pid);
	assert_int_equal(rd->generation, 1);
	assert_int_equal(rd->restarts, 1);
	assert_int_equal(rd->iommu_group, 5);
	assert_string_equal(rd->socket_path, dev(DEV_A)->socket_path);
	assert_string_equal(rd->last_fault, "killed by signal 11");
	assert_int_equal(brk_rec_state_dev(st, DEV_B)->state, BRK_DEV_CONNECTED);
	brk_rec_state_free(st);
	send_remove(DEV_B, true);
	settle();
	w_exit(b);
	ipc_msg_free(expect_reply());
	st = record_now();
	assert_null(brk_rec_state_dev(st, DEV_B));
	assert_non_null(brk_rec_state_vm(st, "vm1"));
	brk_rec_state_free(st);
	send_remove(DEV_A, true);
	settle();
	w_exit(a2);
	ipc_msg_free(expect_reply());
	st = record_now();
	assert_int_equal(st->ndevs, 0);
	assert_int_equal(st->nvms, 0);
	brk_rec_state_free(st);
}

/* ---- a broker started after this one: the same fds, adopted ---------------------------------- */

/* The second broker of a restart, on the same loop, fakes and configuration (or `cfg`). */
struct next {
	struct brk_daemon *dmn;
	struct brk_config *cfg;
	struct brk_fdstore *store;
};

/* What systemd would pass the next broker: a dup of every fd in the store, by name. */
static struct brk_fdstore_set *store_as_passed(void)
{
	/* The names the daemon uses for what these tests add: vm1, groups 5 and 6, DEV_A, DEV_B,
	 * DEV_A1. */
	static const char *const all[] = {"state",
					  "ctr.vm1",
					  "grp.5",
					  "dev.0000-00-03.0",
					  "wch.0000-00-03.0",
					  "wpid.0000-00-03.0",
					  "grp.6",
					  "dev.0000-00-04.0",
					  "wch.0000-00-04.0",
					  "wpid.0000-00-04.0",
					  "dev.0000-00-03.1",
					  "wch.0000-00-03.1",
					  "wpid.0000-00-03.1"};
	char names[ARRAY_SIZE(all)][64];
	const char *np[ARRAY_SIZE(all)];
	int fds[ARRAY_SIZE(all)];
	size_t n = 0;
	char name[64];

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		int fd = brk_fdstore_get(E.store, all[i]);

		if (fd < 0)
			continue;
		snprintf(name, sizeof(name), "%s", all[i]);
		snprintf(names[n], sizeof(names[n]), "%s", name);
		np[n] = names[n];
		fds[n] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		assert_true(fds[n] >= 0);
		/* The fake kernel knows the dup as what the original is. */
		for (unsigned k = 0; k < E.f.nfds; k++)
			if (E.f.fds[k].fd == fd)
				fake_vfio_fd(&E.f, fds[n], E.f.fds[k].pid ? NULL : E.f.fds[k].path,
					     E.f.fds[k].pid);
		n++;
	}
	return passed_set(np, fds, n);
}

static void next_start(struct next *nx, struct brk_fdstore_set *set, const char *allow)
{
	struct brk_daemon_env denv = {.sys = &E.f.sys, .workers = &fake_workers};
	struct vb_err err = {0};
	char path[128], text[512];
	FILE *fp;
	int lfd;

	memset(nx, 0, sizeof(*nx));
	snprintf(path, sizeof(path), "%s/next.conf", E.dir);
	snprintf(text, sizeof(text),
		 "[broker]\nadmin_uid = 0\nruntime_dir = %s/vmm\n[devices]\nallow = %s\n"
		 "[worker]\nuid_range = 61000-61999\n",
		 E.dir, allow);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	if (brk_config_load(path, &nx->cfg, &err) < 0)
		fail_msg("config: %s", err.msg);
	assert_int_equal(brk_fdstore_new(false, 0, &nx->store), 0);
	denv.store = nx->store;
	snprintf(path, sizeof(path), "%s/next.sock", E.dir);
	assert_int_equal(ipc_listen(path, 0600, 8, &lfd), 0);
	assert_int_equal(brk_daemon_new(&E.loop, nx->cfg, lfd, &denv, &nx->dmn), 0);
	brk_daemon_adopt(nx->dmn, set);
	brk_fdstore_set_free(set);
}

static void next_end(struct next *nx)
{
	brk_daemon_free(nx->dmn);
	assert_int_equal(brk_fdstore_count(nx->store), 0);
	brk_fdstore_free(nx->store);
	brk_config_free(nx->cfg);
	brk_log_set_resolver(NULL, NULL);
}

/* The config header the fake device answers, and sysfs's copy of it. */
static void same_config_in_sysfs(const char *bdf)
{
	char rel[512];
	FILE *fp;

	E.f.cfg[0] = 0x34, E.f.cfg[1] = 0x12, E.f.cfg[2] = 0xe8, E.f.cfg[3] = 0x11;
	E.f.cfg[0x0b] = 0x00, E.f.cfg[0x0a] = 0xff;
	snprintf(rel, sizeof(rel), "%s/sys/devices/pci0000:00/%s/config", E.f.root, bdf);
	fp = fopen(rel, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(E.f.cfg, 1, 256, fp), 256);
	fclose(fp);
}

/* What the pidfd of a worker handed to the next broker names (fake_vfio_fd). */
enum pidfd_names {
	PIDFD_WORKER, /* the worker, alive */
	PIDFD_OTHER,  /* another process: not to be trusted */
	PIDFD_GONE,   /* nothing: the worker died while no broker ran */
};

/* A worker ready for `bdf` in vm1 before the restart, the device's config in sysfs as the next
 * broker compares it, its pidfd naming `names`. */
static struct brk_worker *ready_to_adopt(const char *bdf, enum pidfd_names names)
{
	struct brk_worker *w;

	same_config_in_sysfs(bdf);
	w = add_ready(bdf, "vm1", 0);
	fake_vfio_fd(&E.f, w->pidfd, NULL,
		     names == PIDFD_GONE    ? -1
		     : names == PIDFD_OTHER ? w->pid + 1000
					    : w->pid);
	return w;
}

/* A restart with a trusted record: the next broker takes the VM, its container, group, device
 * and running worker over, each checked against the kernel; its DMA table comes back from the
 * record without a kernel call; an unfinished DMA map of the last broker is undone; the worker
 * answers and the device is READY, then CONNECTED, in the new broker. */
static void test_daemon_adopt_trusted_record_takes_everything_over(void **state)
{
	struct brk_worker *a, *na;
	struct brk_fdstore_set *set;
	struct brk_journal j;
	struct brk_jop op = {.kind = BRK_JOP_DMA_MAP};
	struct brk_dma_stats ds;
	const struct fake_call *c;
	struct vb_err err = {0};
	struct next nx;
	unsigned maps, unmaps;
	int mem;
	struct brk_dev_rec *nd;

	env_start(3);
	a = ready_to_adopt(DEV_A, PIDFD_WORKER);
	w_vmm(a, true);
	mem = test_memfd(1 << 20, F_SEAL_SHRINK);
	if (brk_dma_map(vm_of(DEV_A)->dma, dev(DEV_A)->id, 0x100000, 0x10000, mem, 0,
			BRK_DMA_PROT_READ | BRK_DMA_PROT_WRITE, &err) < 0)
		fail_msg("map: %s", err.msg);
	close(mem);
	/* Killed between the intent of a second map and its kernel call's outcome. */
	assert_int_equal(brk_record_dma_journal(E.dmn->rec, "vm1", &j), 0);
	op.owner = dev(DEV_A)->id, op.iova = 0x400000, op.size = 0x1000;
	op.prot = BRK_DMA_PROT_READ, op.dev = 1, op.ino = 2;
	assert_int_equal(j.intent(&j, &op), 0);
	set = store_as_passed();
	assert_int_equal(set->n, 6);
	maps = fake_vfio_count(&E.f, VFIO_IOMMU_MAP_DMA);
	unmaps = fake_vfio_count(&E.f, VFIO_IOMMU_UNMAP_DMA);
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 1);
	assert_int_equal(nx.dmn->adopt.quiesced, 0);
	assert_int_equal(nx.dmn->adopt.starts, 2);
	assert_string_equal(nx.dmn->adopt.untrusted, "");
	na = last_worker();
	assert_true(na->adopted);
	assert_int_equal(na->pid, a->pid);
	assert_string_equal(na->a.bdf, DEV_A);
	/* The DMA table as it was; no map was replayed, the unfinished one was unmapped. */
	nd = brk_registry_find(nx.dmn->reg, DEV_A);
	assert_non_null(nd);
	assert_int_equal(nd->id, dev(DEV_A)->id);
	brk_dma_stats(((struct dmn_vm *)nd->vm->priv)->dma, &ds);
	assert_int_equal(ds.mappings, 1);
	assert_int_equal(ds.pinned_bytes, 0x10000);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_IOMMU_MAP_DMA), maps);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_IOMMU_UNMAP_DMA), unmaps + 1);
	c = fake_vfio_nth(&E.f, VFIO_IOMMU_UNMAP_DMA, unmaps);
	assert_int_equal(c->iova, 0x400000);
	assert_int_equal(c->size, 0x1000);
	/* No reset, no SET_IRQS: the device keeps running for its VM. */
	assert_int_equal(nd->state, BRK_DEV_STARTING);
	na->a.hooks->ready(na->a.ctx);
	assert_int_equal(nd->state, BRK_DEV_READY);
	na->a.hooks->vmm_state(na->a.ctx, true, 777, 0);
	assert_int_equal(nd->state, BRK_DEV_CONNECTED);
	assert_int_equal(brk_fdstore_count(nx.store), 6);
	next_end(&nx);
}

/* Killed between the intent of an unmap and its outcome: the next broker unmaps again, and the
 * table it rebuilds has the mapping no more (it is rebuilt from the record as resolved, not as
 * loaded), like the record itself. */
static void test_daemon_adopt_pending_unmap_redone_table_without_it(void **state)
{
	struct brk_fdstore_set *set;
	struct brk_journal j;
	struct brk_jop op = {.kind = BRK_JOP_DMA_UNMAP};
	struct brk_dma_stats ds;
	const struct brk_rec_state *st;
	struct vb_err err = {0};
	struct brk_worker *a;
	struct brk_dev_rec *nd;
	struct next nx;
	unsigned unmaps;
	int mem;

	(void)state;
	env_start(3);
	a = ready_to_adopt(DEV_A, PIDFD_WORKER);
	w_vmm(a, true);
	mem = test_memfd(1 << 20, F_SEAL_SHRINK);
	if (brk_dma_map(vm_of(DEV_A)->dma, dev(DEV_A)->id, 0x100000, 0x10000, mem, 0,
			BRK_DMA_PROT_READ | BRK_DMA_PROT_WRITE, &err) < 0)
		fail_msg("map: %s", err.msg);
	close(mem);
	assert_int_equal(brk_record_dma_journal(E.dmn->rec, "vm1", &j), 0);
	op.owner = dev(DEV_A)->id, op.iova = 0x100000, op.size = 0x10000;
	assert_int_equal(j.intent(&j, &op), 0);
	set = store_as_passed();
	unmaps = fake_vfio_count(&E.f, VFIO_IOMMU_UNMAP_DMA);
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 1);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_IOMMU_UNMAP_DMA), unmaps + 1);
	nd = brk_registry_find(nx.dmn->reg, DEV_A);
	assert_non_null(nd);
	brk_dma_stats(((struct dmn_vm *)nd->vm->priv)->dma, &ds);
	assert_int_equal(ds.mappings, 0);
	assert_int_equal(ds.pinned_bytes, 0);
	st = brk_record_state(nx.dmn->rec);
	assert_int_equal(st->npending, 0);
	assert_int_equal(brk_rec_state_vm(st, "vm1")->nmaps, 0);
	next_end(&nx);
}

/* A damaged record: nothing of it is trusted, every device is quiesced. */
static void test_daemon_adopt_damaged_record_quiesces_all(void **state)
{
	struct brk_fdstore_set *set;
	struct next nx;
	uint8_t junk[64];
	int fd;

	env_start(3);
	same_config_in_sysfs(DEV_A);
	add_ready(DEV_A, "vm1", 0);
	set = store_as_passed();
	fd = brk_fdstore_set_take(set, "state");
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	set->e[0].fd = fd; /* back, damaged */
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 0);
	assert_int_equal(nx.dmn->adopt.quiesced, 1);
	assert_non_null(strstr(nx.dmn->adopt.untrusted, "state record"));
	assert_int_equal(brk_registry_ndevices(nx.dmn->reg), 0);
	next_end(&nx);
}

/* The configuration no longer allows the device: it is quiesced and released, not adopted; a
 * stale fd no record entry names is closed. */
static void test_daemon_adopt_device_no_longer_allowed_removed(void **state)
{
	struct brk_fdstore_set *set;
	struct next nx;
	unsigned resets;

	env_start(3);
	same_config_in_sysfs(DEV_A);
	add_ready(DEV_A, "vm1", 0);
	resets = fake_vfio_count(&E.f, VFIO_DEVICE_RESET);
	set = store_as_passed();
	next_start(&nx, set, "8086:10d3");
	assert_int_equal(nx.dmn->adopt.adopted, 0);
	assert_int_equal(nx.dmn->adopt.quiesced, 1);
	assert_null(brk_registry_find(nx.dmn->reg, DEV_A));
	assert_int_equal(fake_vfio_count(&E.f, VFIO_DEVICE_RESET), resets + 1);
	next_end(&nx);
}

/* A worker that died while no broker ran: its pidfd says so. The device, its VM and group are
 * adopted and the death is a worker crash, as one under this broker would be: the device reset
 * and a new worker started (restart = on-failure), the restart counted. */
static void test_daemon_adopt_dead_worker_restarted_as_crash(void **state)
{
	struct brk_fdstore_set *set;
	struct brk_dev_rec *d;
	struct next nx;
	unsigned resets;

	env_start(3);
	ready_to_adopt(DEV_A, PIDFD_GONE);
	set = store_as_passed();
	resets = fake_vfio_count(&E.f, VFIO_DEVICE_RESET);
	assert_int_equal(E.nworkers, 1);
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 1);
	assert_int_equal(nx.dmn->adopt.quiesced, 0);
	d = brk_registry_find(nx.dmn->reg, DEV_A);
	assert_non_null(d);
	assert_int_equal(d->restarts, 1);
	assert_int_equal(d->state, BRK_DEV_STARTING);
	assert_int_equal(E.nworkers, 2); /* the new worker */
	assert_int_equal(fake_vfio_count(&E.f, VFIO_DEVICE_RESET), resets + 1);
	next_end(&nx);
}

/* The owner of an adopted group is described as before the restart, so another VM's AddDevice
 * of a device in it is refused naming the VM and its devices there. */
static void test_daemon_adopt_group_owner_described(void **state)
{
	struct brk_fdstore_set *set;
	struct dmn_assignment *dd;
	struct next nx;
	const char *owner;

	env_start(3);
	ready_to_adopt(DEV_A, PIDFD_WORKER);
	ready_to_adopt(DEV_A1, PIDFD_WORKER);
	set = store_as_passed();
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 2);
	dd = brk_registry_find(nx.dmn->reg, DEV_A)->priv;
	owner = brk_group_owner(dd->grp->g);
	if (!strstr(owner, "vm vm1 (") || !strstr(owner, DEV_A) || !strstr(owner, DEV_A1))
		fail_msg("the adopted group's owner is '%s'", owner);
	next_end(&nx);
}

/* A pidfd that names another process than the recorded worker: not trusted, quiesced. */
static void test_daemon_adopt_pidfd_of_other_pid_quiesced(void **state)
{
	struct brk_fdstore_set *set;
	struct next nx;

	env_start(3);
	ready_to_adopt(DEV_A, PIDFD_OTHER);
	set = store_as_passed();
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 0);
	assert_int_equal(nx.dmn->adopt.quiesced, 1);
	assert_null(brk_registry_find(nx.dmn->reg, DEV_A));
	next_end(&nx);
}

/* Two devices of one VM, the first with a pidfd naming another process: the first is quiesced,
 * the second adopted into the same container; what the first had mapped is unmapped. */
static void test_daemon_adopt_one_device_of_vm_fails_other_adopted(void **state)
{
	struct brk_fdstore_set *set;
	struct brk_dma_stats ds;
	struct vb_err err = {0};
	struct next nx;
	int mem;

	env_start(3);
	ready_to_adopt(DEV_A, PIDFD_OTHER);
	ready_to_adopt(DEV_B, PIDFD_WORKER);
	mem = test_memfd(1 << 20, F_SEAL_SHRINK);
	if (brk_dma_map(vm_of(DEV_A)->dma, dev(DEV_A)->id, 0x100000, 0x10000, mem, 0,
			BRK_DMA_PROT_READ, &err) < 0 ||
	    brk_dma_map(vm_of(DEV_B)->dma, dev(DEV_B)->id, 0x200000, 0x10000, mem, 0,
			BRK_DMA_PROT_READ, &err) < 0)
		fail_msg("map: %s", err.msg);
	close(mem);
	set = store_as_passed();
	assert_int_equal(set->n, 10);
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 1);
	assert_int_equal(nx.dmn->adopt.quiesced, 1);
	assert_null(brk_registry_find(nx.dmn->reg, DEV_A));
	assert_non_null(brk_registry_find(nx.dmn->reg, DEV_B));
	brk_dma_stats(((struct dmn_vm *)brk_registry_find(nx.dmn->reg, DEV_B)->vm->priv)->dma, &ds);
	assert_int_equal(ds.mappings, 1);
	next_end(&nx);
}

/* A device fd that is not the recorded device's (sysfs says another device now). */
static void test_daemon_adopt_stale_device_fd_quiesced(void **state)
{
	struct brk_fdstore_set *set;
	struct next nx;

	env_start(3);
	ready_to_adopt(DEV_A, PIDFD_WORKER);
	set = store_as_passed();
	E.f.cfg[2] = 0xe9; /* the fd now reads another device id than sysfs */
	next_start(&nx, set, "1234:11e8");
	assert_int_equal(nx.dmn->adopt.adopted, 0);
	assert_int_equal(nx.dmn->adopt.quiesced, 1);
	next_end(&nx);
}

static void test_daemon_restart_exhausted_stays_faulted_released(void **state)
{
	struct brk_worker *w;

	env_start(1);
	w = add_ready(DEV_A, "vm1", 0);
	w_fault(w);
	w_exit(w);
	w = last_worker();
	w_ready(w);
	w_fault(w);
	w_exit(w);
	/* restart_max 1: no third worker, the device is faulted for good and holds nothing. */
	assert_int_equal(E.nworkers, 2);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_FAULTED);
	assert_int_equal(dev(DEV_A)->worker_pid, 0);
	assert_null(((struct dmn_assignment *)dev(DEV_A)->priv)->device);
	assert_null(dev(DEV_A)->vm->priv);
	assert_int_equal(dev(DEV_A)->socket_path[0], '\0');
}

static void test_daemon_restarted_worker_never_up_not_restarted(void **state)
{
	struct brk_worker *w;

	env_start(3);
	w = add_ready(DEV_A, "vm1", 0);
	w_fault(w);
	w_exit(w);
	w = last_worker();
	/* The restarted worker fails before its handoff: restarting it again would fail too. */
	w_fault(w);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_FAILED_START);
	w_exit(w);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_FAULTED);
	assert_int_equal(E.nworkers, 2);
}

static void test_daemon_add_worker_fails_record_abandoned(void **state)
{
	struct brk_worker *w;

	env_start(3);
	send_add(DEV_A, "vm1", 0);
	settle();
	w = last_worker();
	w_fault(w);
	expect_error(-ECHILD, "the worker failed to start");
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_ABANDONED);
	w_exit(w);
	assert_null(dev(DEV_A));
	assert_int_equal(brk_registry_nvms(E.dmn->reg), 0);
	assert_int_equal(E.nworkers, 1);
}

static void test_daemon_add_start_refused_gives_everything_back(void **state)
{
	env_start(3);
	E.start_err = -EMFILE;
	send_add(DEV_A, "vm1", 0);
	expect_error(-EMFILE, "fake start refused");
	assert_null(dev(DEV_A));
	assert_int_equal(brk_registry_nvms(E.dmn->reg), 0);
	assert_int_equal(fake_vfio_count(&E.f, VFIO_GROUP_GET_DEVICE_FD), 1);
}

static void test_daemon_stale_faulted_record_replaced_by_add(void **state)
{
	struct brk_worker *w;

	env_start(0);
	w = add_ready(DEV_A, "vm1", 0);
	w_fault(w);
	w_exit(w);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_FAULTED);
	/* The faulted record gives way to a new AddDevice, even for another VM. */
	w = add_ready(DEV_A, "vm2", 0);
	assert_string_equal(dev(DEV_A)->vm->name, "vm2");
	assert_int_equal(dev(DEV_A)->restarts, 0);
	assert_int_equal(brk_registry_ndevices(E.dmn->reg), 1);
	assert_null(brk_registry_find_vm(E.dmn->reg, "vm1"));
	/* A device in service does not: it is someone's. */
	send_add(DEV_A, "vm3", 0);
	expect_error(-EEXIST, "already assigned to vm vm2 (ready)");
}

static void test_daemon_remove_faulted_released_answers_at_once(void **state)
{
	const Vb__Ctl__RemoveDeviceReply *rep;
	struct brk_worker *w;
	struct ipc_msg *m;

	env_start(0);
	w = add_ready(DEV_A, "vm1", 0);
	w_fault(w);
	w_exit(w);
	send_remove(DEV_A, false);
	m = expect_reply();
	rep = (const Vb__Ctl__RemoveDeviceReply *)m->body;
	assert_false(rep->vmm_acknowledged);
	ipc_msg_free(m);
	assert_null(dev(DEV_A));
}

static void test_daemon_removed_while_starting_ignores_late_ready(void **state)
{
	struct brk_worker *w;

	env_start(3);
	send_add(DEV_A, "vm1", 0);
	settle();
	w = last_worker();
	send_remove(DEV_A, false);
	settle();
	/* No VMM yet: killed at once, not asked. */
	assert_true(w->killed);
	assert_false(w->removal_requested);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_REMOVING);
	/* A handoff acknowledged after that does not bring it back into service. */
	w_ready(w);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_REMOVING);
	/* A VMM appearing now does not either. */
	w_vmm(w, true);
	assert_int_equal(dev(DEV_A)->state, BRK_DEV_REMOVING);
	w_exit(w);
	expect_error(-ECANCELED, "removed while starting");
	ipc_msg_free(expect_reply());
	assert_null(dev(DEV_A));
}

/* ---- ListDevices pages ---------------------------------------------------------------------- */

static const Vb__Ctl__ListDevicesReply *list_page(const char *after, uint32_t max,
						  struct ipc_msg **m)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;

	req.after = (char *)after;
	req.max_devices = max;
	send_ctl(VB__CTL__TYPE__LIST_DEVICES, &req.base);
	*m = expect_reply();
	return (const Vb__Ctl__ListDevicesReply *)(*m)->body;
}

/* Pages come in BDF order (not the order of AddDevice), the cursor is a BDF that need not be
 * assigned, and a request without the paging fields (a client from before them) gets every
 * device in one reply without a cursor. */
static void test_daemon_list_pages_in_bdf_order_cursor_any_bdf(void **state)
{
	const Vb__Ctl__ListDevicesReply *rep;
	struct ipc_msg *m;

	env_start(3);
	add_ready(DEV_A, "vm1", 0);
	add_ready(DEV_B, "vm2", 0);
	add_ready(DEV_A1, "vm1", 0);
	rep = list_page("", 2, &m);
	assert_int_equal(rep->n_devices, 2);
	assert_string_equal(rep->devices[0]->bdf, DEV_A);
	assert_string_equal(rep->devices[1]->bdf, DEV_A1);
	assert_string_equal(rep->devices[1]->vm, "vm1");
	assert_string_equal(rep->next, DEV_A1);
	ipc_msg_free(m);
	rep = list_page(DEV_A1, 2, &m);
	assert_int_equal(rep->n_devices, 1);
	assert_string_equal(rep->devices[0]->bdf, DEV_B);
	assert_string_equal(rep->next, "");
	ipc_msg_free(m);
	/* A cursor whose device went away (DEV_A2 was never assigned) still says where to go on. */
	rep = list_page(DEV_A2, 2, &m);
	assert_int_equal(rep->n_devices, 1);
	assert_string_equal(rep->devices[0]->bdf, DEV_B);
	ipc_msg_free(m);
	rep = list_page(DEV_B, 2, &m);
	assert_int_equal(rep->n_devices, 0);
	assert_string_equal(rep->next, "");
	ipc_msg_free(m);
	rep = list_page("", 0, &m);
	assert_int_equal(rep->n_devices, 3);
	assert_string_equal(rep->devices[2]->bdf, DEV_B);
	assert_string_equal(rep->next, "");
	ipc_msg_free(m);
}

/* Devices as the daemon keeps a faulted one (its VFIO objects given back), with everything a
 * status carries at its longest: about 560 bytes each on the wire. */
#define MANY_DEVICES 200

static void add_faulted_records(void)
{
	char vm[BRK_VM_NAME_MAX + 1];

	memset(vm, 'v', BRK_VM_NAME_MAX);
	vm[BRK_VM_NAME_MAX] = '\0';
	/* Added from the highest BDF down: the pages must sort them. */
	for (int i = MANY_DEVICES - 1; i >= 0; i--) {
		struct dmn_assignment *dd = calloc(1, sizeof(*dd));
		char bdf[VB_BDF_LEN + 8];
		struct brk_dev_rec *d;

		assert_non_null(dd);
		snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.0", (unsigned)(i / 32 + 1),
			 (unsigned)(i % 32));
		assert_int_equal(brk_registry_add(E.dmn->reg, bdf, vm, &d, NULL), 0);
		dd->dmn = E.dmn;
		dd->rec = d;
		dd->vmm_fd = dd->vfu_fd = -1;
		d->priv = dd;
		memset(d->socket_path, 'p', sizeof(d->socket_path) - 1);
		memset(d->vfu_socket_path, 'u', sizeof(d->vfu_socket_path) - 1);
		brk_dev_set_fault(d, "%0*d", BRK_FAULT_MAX - 1, i);
		assert_int_equal(brk_dev_set_state(d, BRK_DEV_READY), 0);
		assert_int_equal(brk_dev_set_state(d, BRK_DEV_FAILING), 0);
		assert_int_equal(brk_dev_set_state(d, BRK_DEV_FAULTED), 0);
	}
}

static void drop_faulted_records(void)
{
	struct brk_dev_rec *d;

	while ((d = brk_registry_first(E.dmn->reg))) {
		struct brk_vm *vm = d->vm;

		free(d->priv);
		brk_registry_remove(E.dmn->reg, d);
		if (!vm->ndevices)
			assert_int_equal(brk_registry_drop_vm(E.dmn->reg, vm), 0);
	}
}

/* 200 statuses of about 560 bytes are 110 KB, more than one 64 KiB datagram: an unpaged request
 * is refused EMSGSIZE (the session goes on), a paged one with no useful limit (max 4096) gets
 * pages cut to fit, which together are every device once, in order. */
static void test_daemon_list_more_than_a_datagram_paged_to_fit(void **state)
{
	const Vb__Ctl__ListDevicesReply *rep;
	char after[VB_BDF_LEN] = "", last[VB_BDF_LEN] = "";
	unsigned seen = 0, pages = 0;
	struct ipc_msg *m;
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;

	env_start(3);
	add_faulted_records();
	send_ctl(VB__CTL__TYPE__LIST_DEVICES, &req.base);
	expect_error(-EMSGSIZE, "ask for pages (ListDevices.max_devices)");
	do {
		rep = list_page(after, 4096, &m);
		assert_true(rep->n_devices > 0);
		assert_true(protobuf_c_message_get_packed_size(&rep->base) <=
			    ipc_limits_default.max_datagram - IPC_HDR_SIZE);
		for (size_t i = 0; i < rep->n_devices; i++, seen++) {
			assert_true(strcmp(rep->devices[i]->bdf, last) > 0);
			snprintf(last, sizeof(last), "%s", rep->devices[i]->bdf);
			assert_int_equal(strlen(rep->devices[i]->last_fault), BRK_FAULT_MAX - 1);
			assert_int_equal(rep->devices[i]->state,
					 VB__CTL__DEVICE_STATE__STATE_FAULTED);
		}
		if (rep->next[0])
			assert_string_equal(rep->next, last);
		snprintf(after, sizeof(after), "%s", rep->next);
		pages++;
		ipc_msg_free(m);
	} while (after[0]);
	assert_int_equal(seen, MANY_DEVICES);
	assert_int_equal(pages, 2);
	drop_faulted_records();
}

/* ---- the state machine ----------------------------------------------------------------------- */

/* Written out again here, from the lifecycle as documented, so that the table in registry.c is
 * checked against an independent statement of it rather than against itself. */
static bool expected_allowed(enum brk_dev_state from, enum brk_dev_state to)
{
	static const char *const pairs[] = {
	    "starting>ready",	    "starting>removing",     "starting>failed-start",
	    "starting>abandoned",   "starting>faulted",	     "ready>connected",
	    "ready>removing",	    "ready>failing",	     "connected>ready",
	    "connected>removing",   "connected>failing",     "faulted>removing",
	    "failing>starting",	    "failing>faulted",	     "failing>removing",
	    "failed-start>faulted", "failed-start>removing", "abandoned>removing",
	};
	char want[64];

	snprintf(want, sizeof(want), "%s>%s", brk_dev_state_name(from), brk_dev_state_name(to));
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++)
		if (!strcmp(pairs[i], want))
			return true;
	return false;
}

static void test_daemon_state_every_transition_allowed_or_refused(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;
	unsigned allowed = 0;

	assert_int_equal(brk_registry_new(1, 1, &r), 0);
	assert_int_equal(brk_registry_add(r, DEV_A, "vm1", &d, NULL), 0);
	for (int from = 0; from <= BRK_DEV_STATE_LAST + 1; from++) {
		for (int to = 0; to <= BRK_DEV_STATE_LAST + 1; to++) {
			bool valid = from >= BRK_DEV_STARTING && from <= BRK_DEV_STATE_LAST &&
				     to >= BRK_DEV_STARTING && to <= BRK_DEV_STATE_LAST;
			bool want = valid && expected_allowed(from, to);

			if (brk_dev_state_allowed(from, to) != want)
				fail_msg("%s -> %s: table says %d", brk_dev_state_name(from),
					 brk_dev_state_name(to), !want);
			d->state = from;
			assert_int_equal(brk_dev_set_state(d, to), want ? 0 : -EINVAL);
			/* A refused transition leaves the state as it was. */
			assert_int_equal(d->state, want ? to : from);
			allowed += want;
		}
	}
	assert_int_equal(allowed, 18);
	/* Every state has a name and a wire value among vb.ctl.DeviceState's five. */
	for (int s = BRK_DEV_STARTING; s <= BRK_DEV_STATE_LAST; s++) {
		assert_string_not_equal(brk_dev_state_name(s), "invalid");
		assert_true(brk_dev_state_wire(s) >= BRK_DEV_STARTING &&
			    brk_dev_state_wire(s) <= BRK_DEV_FAULTED);
	}
	d->state = BRK_DEV_STARTING;
	brk_registry_free(r);
}

static void test_daemon_state_transitions_logged_at_debug(void **state)
{
	struct brk_registry *r;
	struct brk_dev_rec *d;
	int level = brk_log_get_level(), saved, fd;
	char buf[1024] = "";

	assert_int_equal(brk_registry_new(1, 1, &r), 0);
	assert_int_equal(brk_registry_add(r, DEV_A, "vm1", &d, NULL), 0);
	fd = memfd_create("log", MFD_CLOEXEC);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	brk_log_set_level(LOG_DEBUG);
	fflush(stderr);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_READY), 0);
	assert_int_equal(brk_dev_set_state(d, BRK_DEV_STARTING), -EINVAL);
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	brk_log_set_level(level);
	assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
	close(fd);
	if (!strstr(buf, "debug: " DEV_A ": state starting -> ready\n") ||
	    !strstr(buf, "warning: " DEV_A ": state ready -> starting is not a transition"))
		fail_msg("log was: %s", buf);
	brk_registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_daemon_list_pages_in_bdf_order_cursor_any_bdf, teardown),
	    cmocka_unit_test_teardown(test_daemon_list_more_than_a_datagram_paged_to_fit, teardown),
	    cmocka_unit_test_teardown(test_daemon_add_replies_when_worker_ready, teardown),
	    cmocka_unit_test_teardown(test_daemon_hotplug_into_running_vm_shares_its_container,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_quota_mismatch_refused_changes_nothing, teardown),
	    cmocka_unit_test_teardown(test_daemon_remove_connected_asks_vmm_then_forgets, teardown),
	    cmocka_unit_test_teardown(test_daemon_group_of_other_vm_refused_naming_it, teardown),
	    cmocka_unit_test_teardown(test_daemon_group_of_other_vm_refused_keeps_its_stored_fd,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_removal_revokes_grant_and_names_holder, teardown),
	    cmocka_unit_test_teardown(test_daemon_fault_restarts_worker_next_generation, teardown),
	    cmocka_unit_test_teardown(test_daemon_store_holds_every_fd_while_its_object_lives,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_record_follows_vms_and_devices, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_no_record_quiesces_everything, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_trusted_record_takes_everything_over,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_pending_unmap_redone_table_without_it,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_damaged_record_quiesces_all, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_device_no_longer_allowed_removed, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_dead_worker_restarted_as_crash, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_pidfd_of_other_pid_quiesced, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_group_owner_described, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_stale_device_fd_quiesced, teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_one_device_of_vm_fails_other_adopted,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_adopt_nothing_passed_is_a_first_start, teardown),
	    cmocka_unit_test_teardown(test_daemon_restart_exhausted_stays_faulted_released,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_restarted_worker_never_up_not_restarted,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_add_worker_fails_record_abandoned, teardown),
	    cmocka_unit_test_teardown(test_daemon_add_start_refused_gives_everything_back,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_stale_faulted_record_replaced_by_add, teardown),
	    cmocka_unit_test_teardown(test_daemon_remove_faulted_released_answers_at_once,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_removed_while_starting_ignores_late_ready,
				      teardown),
	    cmocka_unit_test(test_daemon_state_every_transition_allowed_or_refused),
	    cmocka_unit_test(test_daemon_state_transitions_logged_at_debug),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
