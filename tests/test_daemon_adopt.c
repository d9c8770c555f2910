/*
 * test_daemon_adopt: vfio-brokerd's state record and its adoption by the next broker, on the
 * host (daemon_env.c: fake VFIO, fake sysfs, fake workers). The record follows VMs and devices;
 * a broker started with the fds its predecessor left (the fd store's set) takes everything over
 * when the record is trusted and each object checks out against the kernel, and quiesces what
 * does not: no record, a damaged one, a device no longer allowed, a dead worker (a crash), a
 * pidfd of another process, a stale device fd.
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

/* next_start(), and what the next broker made of the set: `adopted` devices taken over,
 * `quiesced` others made safe and let go. */
static void next_adopts(struct next *nx, struct brk_fdstore_set *set, const char *allow,
			unsigned adopted, unsigned quiesced)
{
	next_start(nx, set, allow);
	assert_int_equal(nx->dmn->adopt.adopted, adopted);
	assert_int_equal(nx->dmn->adopt.quiesced, quiesced);
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
	next_adopts(&nx, set, "1234:11e8", 1, 0);
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
	next_adopts(&nx, set, "1234:11e8", 0, 1);
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
	next_adopts(&nx, set, "8086:10d3", 0, 1);
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
	next_adopts(&nx, set, "1234:11e8", 1, 0);
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
	next_adopts(&nx, set, "1234:11e8", 0, 1);
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
	next_adopts(&nx, set, "1234:11e8", 1, 1);
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
	next_adopts(&nx, set, "1234:11e8", 0, 1);
	next_end(&nx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
