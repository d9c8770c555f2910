/*
 * record: the broker's state record, everything a broker started after a crash, restart or
 * re-exec needs to take the devices over (issue 12; the contract is section 3 of the restart
 * design). One memfd "vfio-brokerd-state" (MFD_CLOEXEC | MFD_ALLOW_SEALING, F_SEAL_SHRINK),
 * kept in systemd's fd store as "state".
 *
 * Guarantees, whatever instant a SIGKILL lands at:
 *  - every mutation function below has made its change durable (in the memfd: the pages belong
 *    to the file, not to the process) when it returns 0; one that returned an error changed
 *    nothing, in memory or in the file;
 *  - a mutation the process died in the middle of is absent on load: the record loads as it
 *    was before that mutation, never as garbage and never as an error;
 *  - the record matches the kernel: the DMA table and SET_IRQS write an intent before their
 *    kernel call and a commit or abort after it (journal.h); an intent without either is
 *    returned as pending and the adopter resolves it (brk_record_resolve()).
 *
 * Format (record.c, record_codec.c): page 0 holds two header slots; the slot with the valid
 * CRC and the higher generation names a region holding a snapshot (the whole state, CRC'd as
 * one) followed by an append-only journal of self-checking entries (each with its CRC seeded by
 * the generation, and its sequence number). Load replays the snapshot, then the journal up to
 * the first entry that does not check: that is where a torn write ends. When an append does not
 * fit, the state is compacted into a fresh snapshot in a region that does not overlap the live
 * one, and the other slot is written last (the flip); then the dead region's pages are given
 * back (a hole). So appends cost O(1) amortized (measured: 3 us per DMA map with intent and
 * commit, over 65535 maps); the memfd holds at most one region in memory (the snapshot and a
 * journal up to as large; 5.3 MB after 65535 mappings of about 80 bytes each, just compacted)
 * while its length may reach about four times the snapshot (22 MB there). Integers are
 * little-endian; CRCs are CRC32C.
 *
 * Not thread-safe: the broker's loop is the one writer.
 */
#ifndef VB_BROKER_RECORD_H
#define VB_BROKER_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "dma.h"
#include "err.h"
#include "journal.h"

#define BRK_RECORD_MEMFD_NAME "vfio-brokerd-state"
#define BRK_RECORD_VERSION    1u
/* The loader reads no more than this (a corrupt size must not make it allocate the host), and
 * the record grows no further: about 3 million DMA mappings in all the broker's VMs (a change
 * that would need more fails with -ENOSPC, and the DMA map with it). */
#define BRK_RECORD_MAX_BYTES (1ull << 30)

/* Bounds every count and string of the format checks on load. */
#define BRK_REC_NAME_MAX    64	/* VM name (registry.h BRK_VM_NAME_MAX) */
#define BRK_REC_BDF_MAX	    12	/* dddd:bb:dd.f */
#define BRK_REC_PATH_MAX    108 /* socket paths, NUL included (registry.h) */
#define BRK_REC_FAULT_MAX   256 /* last fault, NUL included (registry.h) */
#define BRK_REC_MAX_VMS	    4096
#define BRK_REC_MAX_DEVS    4096
#define BRK_REC_MAX_MAPS    (1u << 20) /* per VM */
#define BRK_REC_MAX_OWNERS  4096       /* per mapping */
#define BRK_REC_MAX_IRQS    16	       /* per device (vfio.h BRK_DEVICE_MAX_IRQS) */
#define BRK_REC_MAX_VECTORS 2048       /* per index (irq.c) */
#define BRK_REC_MAX_PENDING 4096

struct brk_rec_vm {
	char name[BRK_REC_NAME_MAX + 1];
	uint32_t max_mappings; /* quotas */
	uint64_t max_pinned_bytes;
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t dma_flags; /* BRK_DMA_* cfg flags */
	/* The DMA table's lifetime counters as of the last change (brk_dma_stats). */
	uint64_t maps, unmaps, shares;
	uint32_t nmaps;
	struct brk_dma_mapping *map; /* sorted by iova, never overlapping */
	uint32_t cap;		     /* record.c's */
};

struct brk_rec_irq {
	uint32_t count;	  /* vectors the index has; 0: the index is not recorded */
	uint32_t enabled; /* 0: off */
	uint32_t triggers;
	bool unmask_fd;
	uint8_t trig[BRK_REC_MAX_VECTORS]; /* 1: a trigger eventfd is installed (in the kernel) */
};

struct brk_rec_dev {
	char bdf[BRK_REC_BDF_MAX + 1];
	char vm[BRK_REC_NAME_MAX + 1];
	uint32_t state; /* enum brk_dev_state */
	uint64_t id;	/* the DMA owner handle */
	uint32_t owner_uid;
	uint32_t owner_gid;
	bool allow_mmap;
	uint32_t protocols;
	uint32_t iommu_group;
	char socket_path[BRK_REC_PATH_MAX];
	char vfu_socket_path[BRK_REC_PATH_MAX];
	uint32_t generation;
	uint32_t restarts;
	uint32_t worker_pid; /* 0: none */
	uint32_t worker_uid;
	uint32_t worker_gid;
	uint32_t resets_before;
	char last_fault[BRK_REC_FAULT_MAX];
	/* Per index, kept by the IRQ journal (brk_record_irq_journal); brk_record_dev_put()
	 * leaves it alone. */
	struct brk_rec_irq *irq[BRK_REC_MAX_IRQS]; /* NULL: nothing recorded */
};

/* An intent without commit or abort: the kernel call may or may not have happened. */
struct brk_rec_pending {
	uint64_t id;
	enum brk_jop_kind kind;	       /* DMA_MAP, DMA_UNMAP or IRQ_SET */
	char key[BRK_JOURNAL_KEY_MAX]; /* VM name (DMA), BDF (IRQ) */
	uint64_t owner, iova, size, offset, dev, ino;
	uint32_t prot;
	uint32_t index; /* IRQ_SET */
};

struct brk_rec_state {
	uint64_t starts; /* broker starts, as the broker counts them */
	uint64_t epoch;	 /* the last broker's epoch */
	uint64_t next_id;
	uint32_t nvms, ndevs, npending;
	struct brk_rec_vm **vms;   /* in the order they were put */
	struct brk_rec_dev **devs; /* likewise */
	struct brk_rec_pending *pending;
	void **vm_index, **dev_index; /* record_apply.c's: the same, sorted by name for lookups */
};

struct brk_record;

/* A new, empty record in a new memfd. Errors: -ENOMEM, or memfd_create/ftruncate/fcntl's. */
int brk_record_new(struct brk_record **ret, struct vb_err *err);
/* Continues writing an existing record after loading it: on success *ret owns a dup of `fd`
 * and its state is the loaded one (brk_record_state()), pending intents included. The caller
 * checks the state against the kernel before using it (restart.md section 4). Errors as
 * brk_record_load(), and -EPERM when the memfd is not sealed against shrinking. Nothing is
 * written: a record that fails to load is left as it was, for post-mortem. */
int brk_record_adopt(int fd, struct brk_record **ret, struct vb_err *err);
/* Unmaps and closes. The memfd (and whatever holds a dup of it) keeps the record. NULL ok. */
void brk_record_free(struct brk_record *rec);
VB_DEFINE_CLEANUP(struct brk_record, brk_record_free);
/* The memfd, borrowed: put a dup in the fd store. */
int brk_record_fd(const struct brk_record *rec);
/* The live state (the record's own copy): valid until the next call on `rec`. */
const struct brk_rec_state *brk_record_state(const struct brk_record *rec);

/* Reads and checks a record without adopting it. Loading is hostile input: every count,
 * length, string and CRC is checked and every error names what is wrong ("state record:
 * version 7 unknown (this broker reads 1)"). A torn journal tail is not an error. Errors:
 * -EBADMSG (damaged: bad magic, CRC, bound, or an entry that contradicts the state), -EPROTO
 * (unknown version), -EFBIG (larger than BRK_RECORD_MAX_BYTES), -ENOMEM, or read errors. */
int brk_record_load(int fd, struct brk_rec_state **ret, struct vb_err *err);
/* The same on a buffer (the fuzz target's entry point). */
int brk_record_parse(const uint8_t *buf, size_t len, struct brk_rec_state **ret,
		     struct vb_err *err);
void brk_rec_state_free(struct brk_rec_state *st);
VB_DEFINE_CLEANUP(struct brk_rec_state, brk_rec_state_free);
const struct brk_rec_vm *brk_rec_state_vm(const struct brk_rec_state *st, const char *name);
const struct brk_rec_dev *brk_rec_state_dev(const struct brk_rec_state *st, const char *bdf);

/* Mutations. Each returns 0 once the change is durable; on error nothing changed. Errors:
 * -EINVAL (a string too long or empty, a count beyond the bounds above), -ENOENT (del of
 * something absent), -ENOSPC (the record would exceed BRK_RECORD_MAX_BYTES), -ENOMEM, or
 * ftruncate's error when the memfd must grow. */
int brk_record_set_broker(struct brk_record *rec, uint64_t starts, uint64_t epoch);
/* Creates or replaces the VM's quotas, owner and flags; its mappings and counters stay. */
int brk_record_vm_put(struct brk_record *rec, const struct brk_rec_vm *vm);
/* Forgets the VM, mappings and pending DMA intents included (the caller has freed its DMA
 * table, or closed its container: see below). */
int brk_record_vm_del(struct brk_record *rec, const char *name);
/* Creates or replaces a device (by bdf); its IRQ state stays. */
int brk_record_dev_put(struct brk_record *rec, const struct brk_rec_dev *dev);
/* Forgets the device, its IRQ state and pending SET_IRQS intents included. */
int brk_record_dev_del(struct brk_record *rec, const char *bdf);

/* Fills `j` with the journal of VM `vm`'s DMA table (brk_dma_cfg.journal), or of device
 * `bdf`'s interrupts (brk_irqs_set_journal). `rec` must outlive every table given the journal;
 * the VM / device must be put before the first change and deleted after the table is freed
 * (a change to something the record lacks is refused with -ENOENT). -EINVAL: key too long. */
int brk_record_dma_journal(struct brk_record *rec, const char *vm, struct brk_journal *j);
int brk_record_irq_journal(struct brk_record *rec, const char *bdf, struct brk_journal *j);

/* Records that the adopter resolved pending intent `id` as restart.md section 3 says: a DMA
 * map's range was unmapped (the mapping is absent), a DMA unmap was redone (absent too), a
 * SET_IRQS index was disabled (the index is off). -ENOENT: no such pending intent. The entry
 * leaves st->pending (the last one takes its place: iterate over a copy of the ids). Rebuild the
 * tables from the state after resolving (brk_record_state(), or a loaded copy passed through
 * brk_rec_state_resolve() too): a copy taken before still has the unmapped mapping and the
 * disabled index. */
int brk_record_resolve(struct brk_record *rec, uint64_t id);
/* The same resolution applied to a loaded copy of the state (brk_record_load()). -ENOENT. */
int brk_rec_state_resolve(struct brk_rec_state *st, uint64_t id);

/* Writes a fresh snapshot now (tests, and the adopter once it resolved everything). */
int brk_record_compact(struct brk_record *rec);

struct brk_record_stats {
	uint64_t appends; /* journal entries written */
	uint64_t compactions;
	uint64_t bg_compactions; /* of which written by a thread, off the loop */
	uint64_t bg_waits;	 /* times the journal filled before the thread was done */
	uint64_t file_bytes;	 /* the memfd's size */
	uint64_t snap_bytes;	 /* the live snapshot */
	uint64_t jrn_bytes;	 /* journal used */
	uint64_t jrn_cap;	 /* journal room after the live snapshot */
	uint64_t generation;
	/* A commit could not be applied (a bug, never an input): every change is refused since,
	 * so that the record never says less than the kernel holds. Worth an alarm. */
	bool broken;
};
void brk_record_stats(const struct brk_record *rec, struct brk_record_stats *out);

#endif
