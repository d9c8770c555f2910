/*
 * test_daemon: vfio-brokerd's flows on the host. The daemon runs on a real event loop with a real
 * control socket, against a fake VFIO kernel (fake_vfio.c), a fake sysfs tree (sysfs_tree.c) and
 * fake workers (its brk_worker_ops): each test plays the workers' side through the hooks the
 * daemon gave them (ready, VMM state, fault, exit) and checks what the daemon did: replies,
 * device states, which workers it started, asked, killed or freed, and what it gave back.
 * Add, hot-plug into a running VM, remove, fault and restart, restart exhausted, quota mismatch,
 * stale replacement, and every transition of the device state machine, allowed or not. The
 * environment is daemon_env.c's; a restarted broker's adoption is test_daemon_adopt.c's.
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

/* ---- restarts and failures ------------------------------------------------------------------- */

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
	assert_string_equal(rep->devices[1]->socket_path, dev(DEV_A1)->socket_path);
	assert_int_equal(rep->devices[1]->state, VB__CTL__DEVICE_STATE__STATE_READY);
	/* The edu-like device's INTx and MSI, each a message of its own inside the status. */
	assert_int_equal(rep->devices[1]->n_irqs, 2);
	assert_int_equal(rep->devices[1]->irqs[1]->index, VFIO_PCI_MSI_IRQ_INDEX);
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

/* Between two pages a device goes and others come: the next page starts after the cursor
 * whatever became of the cursor's device, takes in a device added after it, and not one added
 * before it (that one is in the next full listing). */
static void test_daemon_list_devices_added_removed_between_pages(void **state)
{
	const Vb__Ctl__ListDevicesReply *rep;
	struct brk_worker *w;
	struct ipc_msg *m;

	env_start(3);
	add_ready(DEV_A1, "vm1", 0);
	add_ready(DEV_B, "vm2", 0);
	rep = list_page("", 1, &m);
	assert_int_equal(rep->n_devices, 1);
	assert_string_equal(rep->next, DEV_A1);
	ipc_msg_free(m);
	/* The cursor's device is removed, one is added before it and one after it. */
	w = &E.workers[0];
	send_remove(DEV_A1, true);
	settle();
	w_exit(w);
	ipc_msg_free(expect_reply());
	assert_null(dev(DEV_A1));
	add_ready(DEV_A, "vm1", 0);
	add_ready(DEV_A2, "vm1", 0);
	rep = list_page(DEV_A1, 1, &m);
	assert_int_equal(rep->n_devices, 1);
	assert_string_equal(rep->devices[0]->bdf, DEV_A2);
	assert_string_equal(rep->next, DEV_A2);
	ipc_msg_free(m);
	rep = list_page(DEV_A2, 1, &m);
	assert_int_equal(rep->n_devices, 1);
	assert_string_equal(rep->devices[0]->bdf, DEV_B);
	assert_string_equal(rep->next, "");
	ipc_msg_free(m);
	rep = list_page("", 8, &m);
	assert_int_equal(rep->n_devices, 3);
	assert_string_equal(rep->devices[0]->bdf, DEV_A);
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

/* 200 statuses of about 560 bytes are 110 KB, more than one 64 KiB datagram: a paged request
 * with no useful limit (max 4096) gets pages cut to fit, which together are every device once,
 * in order; an unpaged one is refused EMSGSIZE with the size the whole would have had (the
 * pages' statuses together), and the session goes on. */
static void test_daemon_list_more_than_a_datagram_paged_to_fit(void **state)
{
	const Vb__Ctl__ListDevicesReply *rep;
	Vb__Ctl__ListDevicesReply statuses;
	char after[VB_BDF_LEN] = "", last[VB_BDF_LEN] = "", why[80];
	unsigned seen = 0, pages = 0;
	size_t whole = 0;
	struct ipc_msg *m;
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;

	env_start(3);
	add_faulted_records();
	do {
		rep = list_page(after, 4096, &m);
		assert_true(rep->n_devices > 0);
		assert_true(protobuf_c_message_get_packed_size(&rep->base) <=
			    ipc_limits_default.max_datagram - IPC_HDR_SIZE);
		/* Nearly full: the next status (about 560 bytes) would not have fit. */
		if (rep->next[0])
			assert_true(protobuf_c_message_get_packed_size(&rep->base) >
				    ipc_limits_default.max_datagram - IPC_HDR_SIZE - 600);
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
		statuses = *rep;
		statuses.next = "";
		whole += protobuf_c_message_get_packed_size(&statuses.base);
		pages++;
		ipc_msg_free(m);
	} while (after[0]);
	assert_int_equal(seen, MANY_DEVICES);
	assert_int_equal(pages, 2);
	send_ctl(VB__CTL__TYPE__LIST_DEVICES, &req.base);
	snprintf(why, sizeof(why), "the reply (%zu bytes) does not fit one control datagram",
		 whole);
	expect_error(-EMSGSIZE, why);
	/* The session goes on. */
	rep = list_page("", 1, &m);
	assert_int_equal(rep->n_devices, 1);
	ipc_msg_free(m);
	drop_faulted_records();
}

/* A page's statuses are written by hand (daemon_status.c): byte for byte what protobuf-c packs,
 * for statuses of every shape (zeros and empty strings left out, the longest strings, the
 * largest and negative values, interrupt states with zero fields), and the schema has no field
 * the hand-written encoder does not know of. */
static void test_daemon_status_packed_by_hand_as_protobuf_c(void **state)
{
	static const char *const fields[] = {
	    "bdf",	    "vm",     "state",	  "worker_pid",		  "dma_mappings",
	    "pinned_bytes", "irqs",   "restarts", "socket_path",	  "iommu_group",
	    "last_fault",   "resets", "protocol", "vfio_user_socket_path"};
	const ProtobufCMessageDescriptor *desc = &vb__ctl__device_status__descriptor;
	static uint8_t ours[4096], theirs[4096];
	char fault[BRK_FAULT_MAX], path[BRK_SOCK_PATH_MAX];
	Vb__Ctl__IrqState irq[3], *irqs[3] = {&irq[0], &irq[1], &irq[2]};
	Vb__Ctl__DeviceStatus st;

	assert_int_equal(desc->n_fields, ARRAY_SIZE(fields));
	for (unsigned i = 0; i < desc->n_fields; i++) {
		assert_int_equal(desc->fields[i].id, i + 1);
		assert_string_equal(desc->fields[i].name, fields[i]);
	}
	assert_int_equal(vb__ctl__irq_state__descriptor.n_fields, 2);
	assert_int_equal(vb__ctl__list_devices_reply__descriptor.fields[0].id, 1);
	assert_int_equal(vb__ctl__list_devices_reply__descriptor.fields[1].id, 2);
	memset(fault, 'f', sizeof(fault) - 1);
	fault[sizeof(fault) - 1] = '\0';
	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	for (int shape = 0; shape < 4; shape++) {
		size_t n;

		vb__ctl__device_status__init(&st);
		for (int i = 0; i < 3; i++)
			vb__ctl__irq_state__init(&irq[i]);
		if (shape == 1) { /* a typical device */
			st.bdf = DEV_A;
			st.vm = "vm1";
			st.state = VB__CTL__DEVICE_STATE__STATE_READY;
			st.worker_pid = 4242;
			st.socket_path = "/run/vfio-broker/vm1/0000:00:03.0.sock";
			st.protocol = VB__CTL__PROTOCOL__PROTOCOL_NATIVE;
			st.iommu_group = 5;
			irq[1].index = 1;
			st.irqs = irqs;
			st.n_irqs = 2;
		} else if (shape == 2) { /* everything at its longest and largest */
			st.bdf = "ffff:ff:1f.7";
			st.vm = fault + sizeof(fault) - 1 - BRK_VM_NAME_MAX;
			st.state = VB__CTL__DEVICE_STATE__STATE_FAULTED;
			st.worker_pid = UINT32_MAX;
			st.dma_mappings = UINT32_MAX;
			st.pinned_bytes = UINT64_MAX;
			st.restarts = 127;
			st.socket_path = path;
			st.iommu_group = 128;
			st.last_fault = fault;
			st.resets = 16384;
			st.protocol = VB__CTL__PROTOCOL__PROTOCOL_BOTH;
			st.vfio_user_socket_path = path;
			irq[0].index = 0;
			irq[0].enabled = 1;
			irq[1].index = 2;
			irq[1].enabled = 2048;
			irq[2].index = 4;
			st.irqs = irqs;
			st.n_irqs = 3;
		} else if (shape == 3) { /* an enum out of range: int32, ten bytes */
			st.bdf = DEV_B;
			st.state = (Vb__Ctl__DeviceState)-1;
			st.protocol = (Vb__Ctl__Protocol)200;
		}
		n = protobuf_c_message_pack(&st.base, theirs);
		assert_int_equal(brk_daemon__status_packed_size(&st), n);
		assert_int_equal(brk_daemon__status_pack(&st, ours), n);
		assert_memory_equal(ours, theirs, n);
	}
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
	    cmocka_unit_test_teardown(test_daemon_list_devices_added_removed_between_pages,
				      teardown),
	    cmocka_unit_test_teardown(test_daemon_list_more_than_a_datagram_paged_to_fit, teardown),
	    cmocka_unit_test(test_daemon_status_packed_by_hand_as_protobuf_c),
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
