/*
 * daemon_priv: the daemon's records, shared by daemon.c (control requests), daemon_vfio.c (VFIO
 * objects), daemon_worker.c (workers), daemon_adopt.c (take-over), daemon_record.c (the state
 * record) and daemon_status.c (status, list and metrics). Not for anything outside the daemon.
 */
#ifndef VB_BROKER_DAEMON_PRIV_H
#define VB_BROKER_DAEMON_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "control.h"
#include "dma.h"
#include "journal.h"
#include "registry.h"
#include "steps.h"
#include "sys.h"
#include "vfio.h"
#include "worker.h"

struct dmn_group {
	struct brk_group *g;
	uint32_t nr;
	uint32_t users; /* devices of the VM in this group */
	struct dmn_group *next;
};

/* brk_vm.priv */
struct dmn_vm {
	struct brk_container *container;
	struct brk_dma *dma;
	struct dmn_group *groups;
	uint32_t live; /* devices holding VFIO objects (not faulted-and-released) */
	uid_t owner_uid;
	gid_t owner_gid;
};

/* brk_dev_rec.priv: what the daemon holds for one device assigned to a VM, from AddDevice (or
 * adoption) until its record is forgotten. */
struct dmn_assignment {
	struct brk_daemon *dmn;
	struct brk_dev_rec *rec;
	struct brk_vfio_dev *device; /* NULL once released */
	struct dmn_group *grp;
	struct brk_worker *worker; /* NULL when none runs */
	uid_t worker_uid;
	gid_t worker_gid;
	int vmm_fd; /* the VMM listening socket until the worker has it */
	int vfu_fd; /* the vfio-user listening socket, likewise */
	uint32_t generation;
	uint32_t resets_before;		  /* resets of earlier device handles */
	struct brk_ctl_call *add_call;	  /* AddDevice waiting for the worker's handoff */
	struct brk_ctl_call *remove_call; /* RemoveDevice waiting for the teardown */
	bool hotplug;			  /* added to a VM that was already running */
	bool adopted;			  /* taken over from the last broker, not yet ready */
	bool vmm_acknowledged;		  /* how the removal went, for its reply */
	char held[160]; /* set at release when a VMM's mmap grant keeps the group open */
	/* An AddDevice's steps until its answer (logged then, at debug level), and when it was
	 * answered, until its VMM connects: where a hot-plug's time goes (bench/README.md, P4). */
	struct vb_steps add_steps;
	uint64_t add_answered_ns;
};

/* How the last start went with what the broker before left (daemon_adopt.c). */
struct dmn_adopt {
	bool attempted;	 /* fds were passed: a restart, not a first start */
	uint64_t starts; /* broker starts, this one included, as the record counts them */
	uint64_t ms;	 /* how long adopting (or quiescing) took */
	uint32_t adopted, quiesced;
	char untrusted[256]; /* why the state was not trusted; "" when it was */
};

struct brk_daemon {
	uv_loop_t *loop;
	const struct brk_config *cfg;
	const struct brk_sys *sys;
	const struct brk_worker_ops *workers;
	struct brk_registry *reg;
	struct brk_ctl *ctl;
	struct brk_fdstore *store; /* NULL: nothing outlives the process */
	struct brk_record *rec;	   /* the state record (record.h); NULL without a store */
	struct brk_pool *pool;	   /* pre-started workers (pool.h); NULL with fake workers */
	uint64_t restarts_total, adds_total, removes_total;
	struct dmn_adopt adopt;
	/* ListDevices' replies are packed here (daemon_status.c): brk_ctl_reply_room() bytes,
	 * allocated at the first one and kept, so that no page allocates (or, in glibc, trims and
	 * regrows the heap: page faults, which cost most in an emulated guest). Its pages are
	 * touched only as far as the longest reply went. */
	uint8_t *list_buf;
};

/* daemon_record.c: what goes into the state record; each a no-op without one. Errors: the
 * record's (record.h). */
int brk_daemon__rec_vm(struct brk_daemon *dmn, const struct brk_vm *vm, uint32_t dma_flags);
void brk_daemon__rec_vm_del(struct brk_daemon *dmn, const char *vm);
int brk_daemon__rec_dma_journal(struct brk_daemon *dmn, const char *vm, struct brk_journal *j);
int brk_daemon__rec_dev(struct dmn_assignment *dd);
void brk_daemon__rec_dev_del(struct brk_daemon *dmn, const char *bdf);
int brk_daemon__rec_irq_journal(struct dmn_assignment *dd);

/* daemon_worker.c: whether a device's worker runs as `uid` (pool.h's brk_pool_uid_used_fn). */
bool brk_daemon__uid_used(void *dmn, uid_t uid);

/* daemon.c */
/* sysfs's vendor or device id of `bdf`. */
int brk_daemon__read_id(const struct brk_sys *sys, const char *bdf, const char *attr,
			uint16_t *ret);

/* daemon_vfio.c: the VFIO objects and the fd store */
/* Keeps `fd` where the next broker finds it (fdstore.h), before the object is used; a no-op
 * without a store. */
int brk_daemon__store_put(struct brk_daemon *dmn, const char *kind, const char *id, int fd,
			  struct vb_err *err);
/* Before the object's fd is closed. */
void brk_daemon__store_drop(struct brk_daemon *dmn, const char *kind, const char *id);
/* Binds (when asked) and opens the device of a new assignment into its VM's container, group and
 * DMA table (made for the VM's first device, with quotas maxmap/maxpin), records it and resets
 * it. On failure brk_daemon__dev_release() gives back what was made. */
int brk_daemon__vfio_open(struct brk_daemon *dmn, struct dmn_assignment *dd,
			  const Vb__Ctl__AddDevice *req, uint32_t maxmap, uint64_t maxpin,
			  struct vb_err *err);
/* How a group the VM does not have yet is had: opened and attached (AddDevice), or taken from
 * what the last broker left (daemon_adopt.c). On failure nothing is left to release. */
typedef int (*brk_daemon_group_open_fn)(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr,
					void *ctx, struct brk_group **ret, struct vb_err *err);
/* The VM's group `nr` with one more user: the one it has, or one had through `open` and kept in
 * the fd store. */
int brk_daemon__group_get(struct brk_daemon *dmn, struct dmn_vm *v, uint32_t nr,
			  brk_daemon_group_open_fn open, void *ctx, struct dmn_group **ret,
			  struct vb_err *err);
/* The VM's DMA table with its quotas (vm->max_*), journalled to the record. */
int brk_daemon__vm_dma(struct brk_daemon *dmn, struct brk_vm *vm, struct vb_err *err);
/* Interrupts off and the device's DMA unmapped: safe while its worker may still run. */
void brk_daemon__quiesce(struct dmn_assignment *dd);
/* Resets the device: only once its worker is gone. */
void brk_daemon__reset(struct dmn_assignment *dd);
/* Gives back everything the assignment holds (worker, sockets, device, group, and the VM's
 * container after its last device); the registry record stays. */
void brk_daemon__dev_release(struct dmn_assignment *dd);
/* Drops the registry record (and its VM's, when it was the last). After dev_release. */
void brk_daemon__dev_forget(struct dmn_assignment *dd);

/* Names the group's holder (brk_group_set_owner): VM `vm` and its devices in the group. */
void brk_daemon__group_describe(struct brk_daemon *dmn, struct dmn_group *g, const char *vm);

/* daemon_worker.c: the assignment's worker */
/* A worker found dead at adoption (it died while no broker ran): handled as a worker crash seen
 * now, its device quiesced and reset, then the restart policy. */
void brk_daemon__worker_lost(struct dmn_assignment *dd, pid_t pid, const char *reason);
/* Binds the VMM sockets (again, for a restart: same paths) and starts the worker. */
int brk_daemon__worker_start(struct dmn_assignment *dd, struct vb_err *err);
/* Takes over the device's running worker (brk_worker_ops.adopt) and keeps its fds in the store.
 * On failure the caller still owns pidfd and chan. */
int brk_daemon__worker_adopt(struct dmn_assignment *dd, pid_t pid, int pidfd, int chan,
			     struct vb_err *err);
/* Ends the worker (killed and reaped) and drops its fds from the store. */
void brk_daemon__worker_free(struct dmn_assignment *dd);
/* Releases and forgets a removed device, answers its RemoveDevice and announces the removal. */
void brk_daemon__finish_removal(struct dmn_assignment *dd);

/* daemon_status.c */
int brk_daemon__list_devices(void *ctx, const Vb__Ctl__ListDevices *req, struct brk_ctl_call *call);
/* A DeviceStatus's wire bytes as protobuf_c_message_pack() writes them, without its descriptor
 * walk (ListDevices' pages): their number, and the bytes at `out` (room for that many). */
size_t brk_daemon__status_packed_size(const Vb__Ctl__DeviceStatus *st);
size_t brk_daemon__status_pack(const Vb__Ctl__DeviceStatus *st, uint8_t *out);
int brk_daemon__device_status(void *ctx, const char *bdf, struct brk_ctl_call *call);
int brk_daemon__metrics(void *ctx, FILE *out);

#endif
