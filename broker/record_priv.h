/*
 * record_priv: what record.c (the file: slots, regions, journal, compaction, hooks) and
 * record_codec.c (entries: encoding, checks, applying them to a state) share.
 *
 * Layout of the memfd:
 *   page 0: two header slots, at 0 and at 2048 (rec_slot below);
 *   regions, page aligned: [snapshot: snap_len bytes of entries][journal: jrn_cap bytes].
 * An entry: crc32c u32 (over the generation, then bytes 4..len), len u32 (header included,
 * unpadded), seq u64, type u16, payload; the next entry starts at the next multiple of 8.
 * Sequence numbers run from 0 through the snapshot and on through the journal.
 */
#ifndef VB_BROKER_RECORD_PRIV_H
#define VB_BROKER_RECORD_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

#define REC_PAGE      4096u
#define REC_SLOT_LEN  64u
#define REC_SLOT_STEP 2048u
#define REC_HDR_LEN   18u
#define REC_MAGIC     "VBRKSTAT"

/* Slot fields (offsets). */
#define REC_SLOT_VERSION 8
#define REC_SLOT_SIZE	 12
#define REC_SLOT_GEN	 16
#define REC_SLOT_OFF	 24
#define REC_SLOT_SNAPLEN 32
#define REC_SLOT_JRNCAP	 40
#define REC_SLOT_SNAPCRC 48
#define REC_SLOT_CRC	 56

enum rec_type {
	REC_BROKER = 1,	  /* starts, epoch, next intent id */
	REC_VM_PUT = 2,	  /* quotas, owner, flags */
	REC_VM_DEL = 3,	  /* name */
	REC_VM_STATS = 4, /* snapshot: the DMA counters */
	REC_DEV_PUT = 5,  /* the whole device but its IRQ state */
	REC_DEV_DEL = 6,  /* bdf */
	REC_MAP = 7,	  /* snapshot: one mapping with its owners */
	REC_IRQ = 8,	  /* snapshot: one index of a device */
	REC_INTENT = 9,	  /* before a kernel call */
	REC_COMMIT = 10,  /* after it, done (an IRQ commit carries the index's new state) */
	REC_ABORT = 11,	  /* after it, not done */
	REC_SHARE = 12,	  /* an owner joins a mapping */
	REC_UNSHARE = 13, /* an owner leaves a mapping others hold */
	REC_FORGET = 14,  /* a VM's mappings are gone (the kernel dropped them) */
	REC_RESOLVE = 15, /* the adopter resolved a pending intent */
};
#define REC_TYPE_LAST REC_RESOLVE

/* A growing byte buffer; `oom` sticks once an allocation failed. */
struct rec_buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

void rec_buf_free(struct rec_buf *b);
/* Capacity for `cap` bytes in all. -ENOMEM. */
int rec_buf_reserve(struct rec_buf *b, size_t cap);
void rec_put(struct rec_buf *b, const void *v, size_t n);
void rec_put_u8(struct rec_buf *b, uint8_t v);
void rec_put_u32(struct rec_buf *b, uint32_t v);
void rec_put_u64(struct rec_buf *b, uint64_t v);
void rec_put_str(struct rec_buf *b, const char *s);

/* Payload encoders: each writes one entry's payload into `b` (after b->len). */
void rec_enc_broker(struct rec_buf *b, uint64_t starts, uint64_t epoch, uint64_t next_id);
void rec_enc_vm_put(struct rec_buf *b, const struct brk_rec_vm *vm);
void rec_enc_vm_stats(struct rec_buf *b, const struct brk_rec_vm *vm);
void rec_enc_dev_put(struct rec_buf *b, const struct brk_rec_dev *d);
void rec_enc_map(struct rec_buf *b, const char *vm, const struct brk_dma_mapping *m);
void rec_enc_irq(struct rec_buf *b, const char *bdf, uint32_t index, uint32_t count,
		 uint32_t enabled, bool unmask_fd, const uint8_t *trig);
/* An index's state: count, enabled, unmask_fd, then one bit per vector of `trig`. */
void rec_enc_irq_state(struct rec_buf *b, uint32_t count, uint32_t enabled, bool unmask_fd,
		       const uint8_t *trig);
void rec_enc_intent(struct rec_buf *b, const struct brk_rec_pending *p);
void rec_enc_id(struct rec_buf *b, uint64_t id); /* ABORT, RESOLVE, DMA COMMIT */
void rec_enc_owner(struct rec_buf *b, const char *vm, uint64_t iova, uint64_t size,
		   uint64_t owner); /* SHARE, UNSHARE */

/* Frames a payload into an entry: appends to `out` the header, `payload` and the padding. */
void rec_frame(struct rec_buf *out, uint64_t gen, uint64_t seq, unsigned type,
	       const uint8_t *payload, size_t plen);
/* Whether `avail` bytes at `p` start a valid entry of generation `gen` with sequence `seq`:
 * its length (unpadded) or 0. */
size_t rec_entry_ok(const uint8_t *p, size_t avail, uint64_t gen, uint64_t seq);
static inline size_t rec_pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* What a parse found, beyond the state: where the live region and the journal's tail are. */
struct rec_pos {
	unsigned slot;
	uint64_t gen, region_off, snap_len, jrn_cap, jrn_used, seq;
};

/* record_load.c: the state in `buf` (a whole record) and where its live region and journal's
 * tail are; and a record file's bytes read whole. */
int rec_parse(const uint8_t *buf, size_t len, struct brk_rec_state **ret, struct rec_pos *pos,
	      struct vb_err *err);
int rec_read_all(int fd, uint8_t **ret, size_t *ret_len, struct vb_err *err);

/* A header slot (REC_SLOT_LEN bytes) naming a region, its CRC included. */
void rec_slot_fill(uint8_t *slot, uint64_t gen, uint64_t off, uint64_t snap_len, uint64_t jrn_cap,
		   uint32_t snap_crc);

/* Checks one entry's payload and applies it to `st`, all or nothing. -EBADMSG with a message
 * for anything malformed or contradicting the state, -ENOMEM. */
int rec_apply(struct brk_rec_state *st, unsigned type, bool in_snapshot, const uint8_t *p,
	      size_t len, struct vb_err *err);
const char *rec_type_name(unsigned type);

/* Every entry that rebuilds `st`, framed, seq 0.., into `out`; *ret_count: how many. */
void rec_enc_snapshot(const struct brk_rec_state *st, uint64_t gen, struct rec_buf *out,
		      uint64_t *ret_count);

/* Where a compaction in a thread (record.c) can be stopped, for the tests that SIGKILL it there;
 * NULL but in them. */
enum rec_bg_point {
	REC_BG_HALF_WRITTEN,  /* the thread wrote half the new snapshot */
	REC_BG_WRITTEN,	      /* the thread is done */
	REC_BG_DELTA_WRITTEN, /* the loop re-framed the later entries, the slot not yet written */
	REC_BG_FLIPPED,	      /* the slot names the new region; the old one not yet cleared */
};
extern void (*rec_bg_hook)(enum rec_bg_point point);

/* record_state.c: the model */
struct brk_rec_state *rec_state_new(void);
/* A copy of what the snapshot is written from (everything but the name indexes: the copy is
 * for rec_enc_snapshot() only), or NULL for memory. */
struct brk_rec_state *rec_state_copy(const struct brk_rec_state *st);
struct brk_rec_vm *rec_state_vm(const struct brk_rec_state *st, const char *name);
struct brk_rec_dev *rec_state_dev(const struct brk_rec_state *st, const char *bdf);
struct brk_rec_pending *rec_state_pending(const struct brk_rec_state *st, uint64_t id);
/* Index of the mapping starting at iova with `size`, or -1. */
long rec_vm_find_map(const struct brk_rec_vm *vm, uint64_t iova, uint64_t size);
/* Room for one more mapping (so that a commit cannot fail). */
int rec_vm_reserve(struct brk_rec_vm *vm);
/* Inserts `m` (owning m->also) in IOVA order; capacity must be reserved. -EEXIST on overlap. */
int rec_vm_insert(struct brk_rec_vm *vm, const struct brk_dma_mapping *m);
/* Removes mapping i, freeing its owner list. */
void rec_vm_remove(struct brk_rec_vm *vm, uint32_t i);
/* A new VM `name` (not yet in `st`), indexed, its other fields zero. -ENOSPC (BRK_REC_MAX_VMS),
 * -ENOMEM; `st` unchanged on error. */
int rec_state_add_vm(struct brk_rec_state *st, const char *name, struct brk_rec_vm **ret);
/* Unindexes and frees a VM (its mappings with it). */
void rec_state_del_vm(struct brk_rec_state *st, struct brk_rec_vm *vm);
/* Indexes `d` (not yet in `st`), which `st` owns from then on. -ENOSPC (BRK_REC_MAX_DEVS),
 * -ENOMEM; on error `st` is unchanged and `d` stays the caller's. */
int rec_state_add_dev(struct brk_rec_state *st, struct brk_rec_dev *d);
/* Unindexes and frees a device (its IRQ states with it). */
void rec_state_del_dev(struct brk_rec_state *st, struct brk_rec_dev *d);

#endif
