/*
 * registry: what the broker serves: VMs by name and devices by PCI address, each device with its
 * lifecycle state. The state machine is data (registry.c's transition table) so that every
 * change of state goes through one check; the daemon attaches its VFIO and worker objects via
 * the `priv` pointers. Not thread-safe; the broker runs one event loop.
 */
#ifndef VB_BROKER_REGISTRY_H
#define VB_BROKER_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BRK_VM_NAME_MAX	  64
#define BRK_FAULT_MAX	  256
#define BRK_SOCK_PATH_MAX 108

/*
 * A device's one state machine (registry.c's transition table is the only way between states).
 * The first five values equal vb.ctl.DeviceState; the last three are the broker's own and show
 * as FAULTED on the wire (brk_dev_state_wire()): a worker has failed and its process is not
 * reaped yet, and what happens at reaping depends on how it failed.
 */
enum brk_dev_state {
	BRK_DEV_STARTING = 1,	  /* worker spawned, HANDOFF not yet acknowledged */
	BRK_DEV_READY = 2,	  /* worker up, no VMM connected */
	BRK_DEV_CONNECTED = 3,	  /* a VMM is connected to the worker */
	BRK_DEV_REMOVING = 4,	  /* RemoveDevice in progress: the record goes at reaping */
	BRK_DEV_FAULTED = 5,	  /* faulted for good: VFIO objects given back, record kept */
	BRK_DEV_FAILING = 6,	  /* its worker had come up: the restart policy decides */
	BRK_DEV_FAILED_START = 7, /* a restarted worker never came up: FAULTED at reaping */
	BRK_DEV_ABANDONED = 8,	  /* the worker of an AddDevice failed: the record goes */
};
#define BRK_DEV_STATE_LAST BRK_DEV_ABANDONED

struct brk_vm {
	char name[BRK_VM_NAME_MAX + 1];
	uint32_t ndevices;
	uint32_t max_dma_mappings; /* the VM's quotas, shared by its devices */
	uint64_t max_pinned_bytes;
	void *priv; /* daemon: container and DMA table */
	struct brk_vm *next;
};

struct brk_dev_rec {
	char bdf[13];
	struct brk_vm *vm;
	enum brk_dev_state state;
	uint64_t id; /* unique for the broker's lifetime: the DMA owner handle */
	uid_t owner_uid;
	gid_t owner_gid;
	bool allow_mmap;
	uint32_t protocols; /* BRK_PROTO_* (config.h): the VMM sockets its worker serves */
	pid_t worker_pid;   /* 0: no worker */
	uint32_t restarts;
	uint32_t iommu_group;
	char socket_path[BRK_SOCK_PATH_MAX];	 /* native; empty when not served */
	char vfu_socket_path[BRK_SOCK_PATH_MAX]; /* vfio-user; empty when not served */
	char last_fault[BRK_FAULT_MAX];
	void *priv; /* daemon: device, worker, sockets */
	struct brk_dev_rec *next;
};

struct brk_registry;

/* Errors: -EINVAL (a limit of 0), -ENOMEM. */
int brk_registry_new(uint32_t max_vms, uint32_t max_devices, struct brk_registry **ret);
/* Frees the records only; the caller has released every priv. NULL is allowed. */
void brk_registry_free(struct brk_registry *r);

/* VM names: 1..64 bytes of [A-Za-z0-9._-], not starting with '.' or '-' (they appear in logs,
 * metrics labels and file names). */
bool brk_registry_valid_vm_name(const char *name);

/*
 * Records a new device of VM `vm` (created when it is the VM's first device; *ret_vm_created
 * says so, NULL allowed) in state STARTING. `bdf` must be canonical (bind.h).
 * Errors: -EINVAL (bad VM name or BDF), -EEXIST (the device is already assigned: to this or
 * another VM), -ENOSPC (max_devices or max_vms reached), -ENOMEM. Nothing changes on error.
 */
int brk_registry_add(struct brk_registry *r, const char *bdf, const char *vm,
		     struct brk_dev_rec **ret, bool *ret_vm_created);
/* Gives an adopted device the DMA owner id its predecessor recorded, and makes every later id
 * larger than `next` and than it (a restarted broker must never hand out an id still owning
 * mappings). */
void brk_registry_restore_id(struct brk_registry *r, struct brk_dev_rec *d, uint64_t id,
			     uint64_t next);
/* Forgets a device. Its VM stays, with ndevices one lower, until brk_registry_drop_vm(). */
void brk_registry_remove(struct brk_registry *r, struct brk_dev_rec *d);
/* Forgets a VM that has no devices left; -EBUSY while it has. */
int brk_registry_drop_vm(struct brk_registry *r, struct brk_vm *vm);

struct brk_dev_rec *brk_registry_find(const struct brk_registry *r, const char *bdf);
struct brk_vm *brk_registry_find_vm(const struct brk_registry *r, const char *name);
/* Devices in the order they were added; VMs likewise. */
struct brk_dev_rec *brk_registry_first(const struct brk_registry *r);
struct brk_vm *brk_registry_first_vm(const struct brk_registry *r);
/*
 * The devices whose BDF comes after `after` ("" for every device), in BDF order (canonical BDFs
 * order as strings): returns how many, and *ret points at the first of them in the registry's
 * own index, valid until the next add or remove. A binary search: nothing is copied, sorted or
 * allocated, and no system call is made (glibc's qsort() asks sysinfo(), which the broker's
 * seccomp policy kills it for).
 */
uint32_t brk_registry_after(const struct brk_registry *r, const char *after,
			    struct brk_dev_rec *const **ret);
uint32_t brk_registry_ndevices(const struct brk_registry *r);
uint32_t brk_registry_nvms(const struct brk_registry *r);

/* Whether `from` -> `to` is a transition of the device lifecycle. */
bool brk_dev_state_allowed(enum brk_dev_state from, enum brk_dev_state to);
/* Moves the device to `to`, logged at debug level; -EINVAL (state unchanged, logged as a
 * warning: the daemon asked for something its lifecycle does not have) otherwise. */
int brk_dev_set_state(struct brk_dev_rec *d, enum brk_dev_state to);
const char *brk_dev_state_name(enum brk_dev_state s);
/* The state as vb.ctl.DeviceState reports it (the broker's own states are FAULTED there). */
enum brk_dev_state brk_dev_state_wire(enum brk_dev_state s);
/* Records why the device faulted (kept until the next fault, for DeviceStatus). */
void brk_dev_set_fault(struct brk_dev_rec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
